"""Collecting invoices from the buyer's card or mandate (refunds for credit notes: `payments.refund`).

An attempt is written (with the idempotency key it will send) in the transaction that decides to
collect; only then does the collector call the provider, under that key. States (README,
"Attempt states"): `pending` (not sent yet) → `processing` (the provider has it, undecided) or
`unknown` (no answer: timeout, 5xx, network) → `succeeded` | `failed`; `canceled` when nothing is
open any more by the time it may be sent. Only the provider's final word fails an attempt; a
success wins over every other state. Before an attempt is sent, every earlier attempt of the
invoice is read back from the provider, and none is sent while an earlier one is not final, so
money moves at most once; a second success all the same is refunded or kept as credit, and said.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, InvoiceIssued, PaymentFailed, PaymentRetryRequested, derived_event_id
from billing_events import Money as EventMoney
from billing_events.money import open_amount
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from payments.balance.service import pay_from_balance
from payments.collection import repository as repo
from payments.collection.schemas import CollectionSettingsIn, CollectionSettingsOut
from payments.invoice import repository as invoice_repo
from payments.invoice.service import invoice_row
from payments.keys import attempt_id as make_attempt_id
from payments.keys import provider_key
from payments.methods import repository as methods_repo
from payments.methods.schemas import MethodType
from payments.payment import repository as payment_repo
from payments.payment.service import record_received
from payments.providers import repository as providers_repo
from payments.providers.gateways import Gateways, Outcome, ProviderUnavailable, provider_units
from payments.providers.service import keyring
from payments.refund.service import refund_surplus

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

ATTEMPTS = Counter("billing_payment_attempts_total", "Collection attempts settled, by provider and outcome", ["provider", "outcome"])
PROVIDER_CALLS = Counter(
    "billing_payment_provider_calls_total", "Calls to payment providers, by provider, operation and result", ["provider", "operation", "result"]
)
SURPLUSES = Counter(
    "billing_payment_surplus_total", "Second successes for an invoice already paid, by provider and what became of the surplus", ["provider", "action"]
)
OPEN_ATTEMPTS = Gauge("billing_payment_attempts_open", "Attempts not final yet, by provider and state (pending, processing, unknown)", ["provider", "status"])
UNKNOWN_AGE = Gauge(
    "billing_payment_attempt_unknown_oldest_seconds", "How long the oldest attempt whose outcome is unknown has been so (0: none)", ["provider"]
)

FINAL = {"succeeded", "failed", "canceled"}
OPEN = {"pending", "processing", "unknown"}
PROVIDERS = ("stripe", "gocardless")
start_at_zero(ATTEMPTS, PROVIDERS, ("succeeded", "failed", "reversed", "canceled"))
start_at_zero(SURPLUSES, PROVIDERS, ("refund", "credit"))
METHOD_OF_PROVIDER = {"stripe": "card", "gocardless": "direct_debit"}


def open_of(invoice: Any) -> Decimal:
    return open_amount(invoice.total, invoice.amount_received, invoice.amount_credited)


@dataclass(frozen=True)
class Reconciling:
    """When the collector asks a provider again (README, "How collection never charges twice")."""

    after: float  # first question after an unknown answer; doubles with each call
    max_interval: float  # an unknown attempt is asked at least this often
    processing_check: float  # an attempt the provider holds undecided is read again this often (a lost webhook)

    def unknown_retry(self, calls: int) -> timedelta:
        return timedelta(seconds=min(self.after * 2 ** min(max(calls - 1, 0), 30), self.max_interval))


# --- events in -------------------------------------------------------------------------------


async def on_invoices_issued(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[InvoiceIssued]]) -> None:
    """Project a polled batch of issued invoices, pay each from its buyer's credit first, then
    collect the rest from its card (now) or mandate (on the due date). Set-based: the invoices
    projected in one statement, their buyers' credit locked in two, their cards and mandates looked
    up in one; only an invoice whose buyer has credit, or a card or mandate, is then paid and
    collected one at a time (the others have nothing to pay from or collect from). Every event must
    pass `invoice_row`; an invoice already projected (a replay, or twice in the batch) changes nothing."""
    with tracer.start_as_current_span("collection.invoices_issued", attributes={"billing.batch_size": len(events)}) as span:
        rows: dict[str, tuple[CloudEvent[InvoiceIssued], dict[str, Any]]] = {}
        for event in events:
            rows.setdefault(event.data.invoice_id, (event, invoice_row(event)))
        new = await invoice_repo.insert_invoices(session, [row for _, row in rows.values()])
        fresh = [(event, row) for invoice_id, (event, row) in rows.items() if invoice_id in new]
        credits = await repo.lock_credits(session, [(event.tenant, row["account_id"], row["currency"]) for event, row in fresh])
        methods = await methods_repo.accounts_with_collecting_method(session, [(event.tenant, row["account_id"]) for event, row in fresh])
        one_by_one = 0
        for event, row in fresh:
            tenant, invoice_id = event.tenant, row["invoice_id"]
            has_credit = credits.get((tenant, row["account_id"], row["currency"]), Decimal(0)) > 0
            if not has_credit and (tenant, row["account_id"]) not in methods:
                continue
            one_by_one += 1
            invoice = await invoice_repo.lock_invoice(session, tenant, invoice_id=invoice_id, number=None)
            if has_credit:
                await pay_from_balance(runtime, session, tenant, invoice, open_of(invoice), event.data.issued_on)
            await schedule_attempt(runtime, session, tenant, invoice_id, 1)
        span.set_attributes({"billing.invoices_projected": len(fresh), "billing.one_by_one": one_by_one})


async def on_retry_requested(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentRetryRequested]) -> None:
    """Dunning asks to try again: dunning's retry n is attempt n + 1 (attempt 1 is the
    collection on issue), so the same request twice is one attempt."""
    await schedule_attempt(runtime, session, event.tenant, event.data.invoice_id, event.data.attempt + 1)


async def schedule_attempt(runtime: ServiceRuntime, session: AsyncSession, tenant: str, invoice_id: str, attempt_no: int) -> str | None:
    """Write attempt `attempt_no` for the invoice if something is open and the buyer has a card
    or mandate. Returns the attempt id, or None. It is only sent once every earlier attempt is
    final at the provider (the collector checks), and not at all if nothing is open by then."""
    with tracer.start_as_current_span("schedule_attempt", attributes={"billing.invoice_id": invoice_id, "billing.attempt": attempt_no}):
        invoice = await invoice_repo.lock_invoice(session, tenant, invoice_id=invoice_id, number=None)
        if invoice is None or open_of(invoice) <= 0:
            return None
        method = await methods_repo.collecting_method(session, tenant, invoice.account_id)
        if method is None:
            return None
        today = runtime.clock.today()
        attempt_id = make_attempt_id(invoice_id, attempt_no)
        now = runtime.clock.now()
        created = await repo.insert_attempt(
            session,
            {
                "attempt_id": attempt_id,
                "tenant": tenant,
                "invoice_id": invoice_id,
                "attempt_no": attempt_no,
                "method_id": method.method_id,
                "provider": method.provider,
                "method": method.type,
                "amount": open_of(invoice),
                "currency": invoice.currency,
                "charge_on": max(invoice.due_on, today) if method.type == MethodType.DIRECT_DEBIT else today,
                "idempotency_key": provider_key("attempt", tenant, invoice_id, str(attempt_no)),
                "status": "pending",
                "calls": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
        return attempt_id if created else None


async def set_collection_settings(runtime: ServiceRuntime, session: AsyncSession, tenant: str, body: CollectionSettingsIn) -> CollectionSettingsOut:
    """Store the seller's collection settings (what becomes of a second success's surplus)."""
    with tracer.start_as_current_span("set_collection_settings", attributes={"billing.tenant": tenant, "billing.surplus": body.surplus}):
        now = runtime.clock.now()
        await repo.upsert_setting(session, {"tenant": tenant, "surplus": body.surplus, "updated_at": now})
        return CollectionSettingsOut(surplus=body.surplus, updated_at=now)


# --- settling attempts -----------------------------------------------------------------------


async def apply_outcome(
    runtime: ServiceRuntime, session: AsyncSession, attempt: Any, outcome: Outcome, *, may_reverse: bool = False, recheck_at: datetime | None = None
) -> str:
    """Move an attempt (locked by the caller) to what the provider says, only forward: a
    non-final answer makes a pending or unknown attempt `processing` (read again at
    `recheck_at`); a failure needs the provider's final word and is ignored once succeeded,
    unless `may_reverse` (a collected direct debit returned by the bank); a success wins over
    every other state, a failure that arrived out of order included, and pays the invoice."""
    now = runtime.clock.now()
    values: dict[str, Any] = {"updated_at": now}
    if outcome.provider_ref and not attempt.provider_ref:
        values["provider_ref"] = outcome.provider_ref
    effect = "unchanged"
    if outcome.status == "succeeded" and attempt.status != "succeeded":
        invoice = await invoice_repo.lock_invoice(session, attempt.tenant, invoice_id=attempt.invoice_id, number=None)
        surplus = min(max(attempt.amount - max(open_of(invoice), Decimal(0)), Decimal(0)), attempt.amount)
        recorded = await record_received(
            runtime,
            session,
            attempt.tenant,
            invoice,
            payment_id=attempt.attempt_id,
            amount=attempt.amount,
            method=attempt.method,
            provider=attempt.provider,
            paid_on=runtime.clock.today(),
            reference=outcome.provider_ref or attempt.provider_ref,
        )
        # Recorded before and failed since: a collected direct debit the bank returned. That stands.
        if recorded is not None or attempt.status != "failed":
            values.update(status="succeeded", unknown_since=None, next_call_at=None)
            if recorded is not None and surplus > 0:
                values.update(await _surplus(runtime, session, attempt, invoice, surplus, outcome.provider_ref or attempt.provider_ref))
            effect = "succeeded"
    elif outcome.status == "failed" and attempt.status not in {"failed", "canceled"} and (attempt.status != "succeeded" or may_reverse):
        values.update(status="failed", reason_code=outcome.reason_code, reason=outcome.reason, unknown_since=None, next_call_at=None)
        if attempt.status == "succeeded":
            await _reverse(session, attempt)
        await _emit_failed(runtime, session, attempt, outcome)
        effect = "failed" if attempt.status != "succeeded" else "reversed"
    elif outcome.status == "pending" and attempt.status in {"pending", "unknown"}:
        values.update(status="processing", unknown_since=None)
        effect = "processing"
    if outcome.status == "pending" and recheck_at is not None and values.get("status", attempt.status) == "processing":
        values["next_call_at"] = recheck_at
    await repo.update_attempt(session, attempt.attempt_id, **values)
    if effect in {"succeeded", "failed", "reversed"}:
        ATTEMPTS.labels(attempt.provider, effect).inc()
        await repo.wake_waiting(session, attempt.tenant, attempt.invoice_id, now)
    return effect


async def _surplus(runtime: ServiceRuntime, session: AsyncSession, attempt: Any, invoice: Any, surplus: Decimal, provider_ref: str | None) -> dict[str, Any]:
    """A success that brought more than the invoice still asked (a second success, or the
    invoice paid meanwhile by other means): record_received made the surplus the buyer's credit;
    by the seller's setting it is refunded through the provider instead (the default: a refund
    `surplus:<attempt>` without a credit note, sent by `payments.refund`) or stays credit.
    Either way it is counted, logged and shown on the attempt, never silently kept."""
    action = await repo.surplus_policy(session, attempt.tenant)
    if action == "refund" and provider_ref:
        await refund_surplus(runtime, session, attempt, invoice.account_id, surplus)
    else:
        action = "credit"
    SURPLUSES.labels(attempt.provider, action).inc()
    log.warning(
        "attempt %s succeeded with %s %s beyond what invoice %s still asked (a second success): %s",
        attempt.attempt_id,
        surplus,
        attempt.currency,
        attempt.invoice_id,
        "refunded" if action == "refund" else "kept as the buyer's credit",
    )
    return {"surplus": surplus, "surplus_action": action}


async def _reverse(session: AsyncSession, attempt: Any) -> None:
    if await payment_repo.reverse_payment(session, attempt.tenant, attempt.attempt_id):
        await invoice_repo.add_received(session, attempt.invoice_id, -attempt.amount)


async def _emit_failed(runtime: ServiceRuntime, session: AsyncSession, attempt: Any, outcome: Outcome) -> None:
    invoice = await invoice_repo.get_invoice(session, attempt.tenant, attempt.invoice_id)
    event = PaymentFailed(
        payment_id=attempt.attempt_id,
        invoice_id=attempt.invoice_id,
        seller_id=invoice.seller_id,
        account_id=invoice.account_id,
        amount=EventMoney.of(attempt.amount, attempt.currency),
        method=attempt.method,
        provider=attempt.provider,
        failed_on=runtime.clock.today(),
        reason_code=outcome.reason_code or "unknown",
        reason=outcome.reason or "the provider gave no reason",
    )
    kind = "reversed" if attempt.status == "succeeded" else "failed"
    event_id = derived_event_id("payment_failed", attempt.tenant, attempt.attempt_id, kind)
    await runtime.outbox.add(session, runtime.event(event, tenant=attempt.tenant, event_id=event_id, subject=attempt.attempt_id))


# --- the collector -------------------------------------------------------------------------------


async def call_next_attempt(runtime: ServiceRuntime, gateways: Gateways, reconciling: Reconciling) -> bool:
    """Send one waiting attempt, or ask the provider about one whose outcome is unknown or
    undecided; False when none was due."""
    async with runtime.transaction() as session:
        attempt = await repo.next_attempt_to_call(session, runtime.clock.now())
        if attempt is None:
            return False
        with tracer.start_as_current_span(
            "collect_attempt", attributes={"billing.attempt_id": attempt.attempt_id, "billing.provider": attempt.provider, "billing.status": attempt.status}
        ):
            if attempt.status == "pending":
                await _send(runtime, session, gateways, reconciling, attempt)
            else:
                await _reconcile(runtime, session, gateways, reconciling, attempt)
            return True


async def _send(runtime: ServiceRuntime, session: AsyncSession, gateways: Gateways, reconciling: Reconciling, attempt: Any) -> None:
    """A new attempt goes to the provider only once every earlier one is final there, and only
    for what is still open."""
    wait = await reconcile_earlier(runtime, session, gateways, reconciling, attempt)
    now = runtime.clock.now()
    if wait is not None:
        await repo.update_attempt(session, attempt.attempt_id, next_call_at=now + wait, updated_at=now)
        return
    invoice = await invoice_repo.get_invoice(session, attempt.tenant, attempt.invoice_id)
    due = open_of(invoice)
    if due <= 0:
        await _cancel(runtime, session, attempt)
        return
    if due != attempt.amount and attempt.calls == 0:
        await repo.update_attempt(session, attempt.attempt_id, amount=due)
        attempt = await repo.get_attempt(session, attempt.attempt_id)
    creds = await providers_repo.get(session, keyring(runtime), attempt.tenant, attempt.provider)
    method = await methods_repo.get_method(session, attempt.tenant, attempt.method_id)
    if creds is None or method is None or method.method_ref is None:
        outcome = Outcome("failed", None, "payment_method_unavailable", "the seller's provider account or the buyer's payment method is gone")
        await apply_outcome(runtime, session, attempt, outcome)
        return
    try:
        outcome = await _charge(gateways, attempt, creds, method)
    except ProviderUnavailable as exc:
        await _unanswered(runtime, session, reconciling, attempt, "collect", exc)
        return
    await _answered(runtime, session, reconciling, attempt, "collect", outcome)


async def _reconcile(runtime: ServiceRuntime, session: AsyncSession, gateways: Gateways, reconciling: Reconciling, attempt: Any) -> None:
    """An unknown or processing attempt: ask the provider what it did (by the attempt's
    provider id, or by the attempt id it carries). Only an unknown one of which the provider has
    no trace is sent again, under the same idempotency key, and only while the invoice is open."""
    try:
        creds, method = await _account_of(runtime, session, attempt)
        outcome = await ask_provider(gateways, attempt, creds, method)
        if outcome is None:
            invoice = await invoice_repo.get_invoice(session, attempt.tenant, attempt.invoice_id)
            if open_of(invoice) <= 0:
                await _cancel(runtime, session, attempt)
                return
            outcome = await _charge(gateways, attempt, creds, method)
    except ProviderUnavailable as exc:
        await _unanswered(runtime, session, reconciling, attempt, "reconcile", exc)
        return
    await _answered(runtime, session, reconciling, attempt, "reconcile", outcome)


async def reconcile_earlier(runtime: ServiceRuntime, session: AsyncSession, gateways: Gateways, reconciling: Reconciling, attempt: Any) -> timedelta | None:
    """Read every earlier attempt of the invoice back from the provider and apply what it says
    (a success found here pays the invoice). None when all are final; else how long the new
    attempt waits before it looks again."""
    wait: timedelta | None = None

    def later(delay: timedelta) -> None:
        nonlocal wait
        wait = delay if wait is None else min(wait, delay)

    for before in await repo.earlier_attempts(session, attempt.tenant, attempt.invoice_id, attempt.attempt_no):
        if before.status in {"succeeded", "canceled"} or (before.status == "failed" and before.provider_ref is None):
            continue  # final, and nothing at the provider could change that
        if before.status == "pending":
            later(timedelta(seconds=reconciling.after))
            continue
        try:
            creds, method = await _account_of(runtime, session, before)
            found = await ask_provider(gateways, before, creds, method)
        except ProviderUnavailable:
            PROVIDER_CALLS.labels(before.provider, "reconcile", "unavailable").inc()
            if before.status != "failed":
                later(timedelta(seconds=reconciling.after))
            continue
        PROVIDER_CALLS.labels(before.provider, "reconcile", found.status if found else "not_found").inc()
        if found is not None:
            recheck = runtime.clock.now() + timedelta(seconds=reconciling.processing_check)
            await apply_outcome(runtime, session, before, found, recheck_at=recheck)
        now_status = (await repo.get_attempt(session, before.attempt_id)).status
        if now_status == "processing":
            later(timedelta(seconds=reconciling.processing_check))
        elif now_status not in FINAL:
            later(timedelta(seconds=reconciling.after))
    return wait


async def ask_provider(gateways: Gateways, attempt: Any, creds: Any, method: Any) -> Outcome | None:
    """What the provider did for this attempt, or None if it has no trace of it."""
    if attempt.provider == "stripe":
        if attempt.provider_ref:
            return await gateways.stripe.retrieve(creds.api_key, attempt.provider_ref)
        return await gateways.stripe.find_charge(creds.api_key, method.customer_ref, attempt.attempt_id)
    if attempt.provider_ref:
        return await gateways.gocardless.payment(creds.api_key, attempt.provider_ref)
    return await gateways.gocardless.find_payment(creds.api_key, method.method_ref, attempt.attempt_id)


async def _account_of(runtime: ServiceRuntime, session: AsyncSession, attempt: Any) -> tuple[Any, Any]:
    creds = await providers_repo.get(session, keyring(runtime), attempt.tenant, attempt.provider)
    method = await methods_repo.get_method(session, attempt.tenant, attempt.method_id)
    if creds is None or method is None or method.method_ref is None:
        # Nobody can ask the provider: the attempt stays as it is (and counts as open) rather than lie.
        raise ProviderUnavailable("the seller's provider account or the buyer's payment method is gone")
    return creds, method


async def _charge(gateways: Gateways, attempt: Any, creds: Any, method: Any) -> Outcome:
    metadata = {"attempt_id": attempt.attempt_id, "invoice_id": attempt.invoice_id, "tenant": attempt.tenant}
    amount = provider_units(attempt.provider, attempt.amount, attempt.currency)
    if attempt.provider == "stripe":
        return await gateways.stripe.charge(creds.api_key, method.customer_ref, method.method_ref, amount, attempt.currency, attempt.idempotency_key, metadata)
    # GoCardless answers a repeated idempotency key with the payment first created (the SDK follows the 409).
    return await gateways.gocardless.create_payment(
        creds.api_key, method.method_ref, amount, attempt.currency, attempt.charge_on, attempt.idempotency_key, metadata, None
    )


async def _answered(runtime: ServiceRuntime, session: AsyncSession, reconciling: Reconciling, attempt: Any, operation: str, outcome: Outcome) -> None:
    PROVIDER_CALLS.labels(attempt.provider, operation, outcome.status).inc()
    now = runtime.clock.now()
    await repo.update_attempt(session, attempt.attempt_id, calls=attempt.calls + 1, next_call_at=None)
    await apply_outcome(runtime, session, attempt, outcome, recheck_at=now + timedelta(seconds=reconciling.processing_check))


async def _unanswered(runtime: ServiceRuntime, session: AsyncSession, reconciling: Reconciling, attempt: Any, operation: str, exc: Exception) -> None:
    """No answer: nobody knows whether money moved. Never a failure; asked again later."""
    PROVIDER_CALLS.labels(attempt.provider, operation, "unavailable").inc()
    log.warning("attempt %s: %s did not answer (%s); reconciling later", attempt.attempt_id, attempt.provider, type(exc).__name__)
    now, calls = runtime.clock.now(), attempt.calls + 1
    values: dict[str, Any] = {"calls": calls, "next_call_at": now + reconciling.unknown_retry(calls), "updated_at": now}
    if attempt.status in {"pending", "unknown"}:
        values.update(status="unknown", unknown_since=attempt.unknown_since or now)
    await repo.update_attempt(session, attempt.attempt_id, **values)


async def _cancel(runtime: ServiceRuntime, session: AsyncSession, attempt: Any) -> None:
    """Nothing is open any more and nothing was charged for this attempt: it is not sent."""
    await repo.update_attempt(
        session,
        attempt.attempt_id,
        status="canceled",
        reason_code="nothing_open",
        reason="the invoice was settled before this attempt was sent",
        next_call_at=None,
        unknown_since=None,
        updated_at=runtime.clock.now(),
    )
    ATTEMPTS.labels(attempt.provider, "canceled").inc()


async def measure_open_attempts(runtime: ServiceRuntime) -> None:
    """Set the gauges of attempts not final yet (one set-based query)."""
    async with runtime.sessions() as session:
        rows = await repo.open_attempts(session)
    now = runtime.clock.now()
    for provider in PROVIDERS:
        UNKNOWN_AGE.labels(provider).set(0)
        for status in OPEN:
            OPEN_ATTEMPTS.labels(provider, status).set(0)
    for row in rows:
        OPEN_ATTEMPTS.labels(row.provider, row.status).set(row.attempts)
        if row.status == "unknown" and row.unknown_since is not None:
            UNKNOWN_AGE.labels(row.provider).set((now - row.unknown_since).total_seconds())
