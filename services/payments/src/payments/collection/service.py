"""Collecting invoices from the buyer's card or mandate (refunds for credit notes: `payments.refund`).

An attempt is written (with the idempotency key it will send) in the transaction that decides to
collect; only then does the worker call the provider, under that key. The provider's answer, or a
webhook, settles it: `succeeded` records the payment (PaymentSucceeded), `failed` emits
PaymentFailed with the provider's reason. No answer (timeout, 5xx) leaves it `unknown`; the
worker then asks the provider what happened before it tries again, so money moves at most once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, InvoiceIssued, PaymentFailed, PaymentRetryRequested, derived_event_id
from billing_events import Money as EventMoney
from billing_events.money import open_amount, to_minor
from billing_runtime.service import ServiceRuntime
from payments.balance.service import pay_from_balance
from payments.collection import repository as repo
from payments.invoice import repository as invoice_repo
from payments.invoice.service import project_invoice
from payments.keys import attempt_id as make_attempt_id
from payments.keys import provider_key
from payments.methods import repository as methods_repo
from payments.payment import repository as payment_repo
from payments.payment.service import record_received
from payments.providers import repository as providers_repo
from payments.providers.gateways import Gateways, Outcome, ProviderUnavailable

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

ATTEMPTS = Counter("billing_payment_attempts_total", "Collection attempts settled, by provider and outcome", ["provider", "outcome"])
PROVIDER_CALLS = Counter(
    "billing_payment_provider_calls_total", "Calls to payment providers, by provider, operation and result", ["provider", "operation", "result"]
)

FINAL = {"succeeded", "failed"}
METHOD_OF_PROVIDER = {"stripe": "card", "gocardless": "direct_debit"}


def open_of(invoice: Any) -> Decimal:
    return open_amount(invoice.total, invoice.amount_received, invoice.amount_credited)


# --- events in -------------------------------------------------------------------------------


async def on_invoice_issued(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[InvoiceIssued]) -> None:
    """Project the invoice, pay it from the buyer's credit first, then collect the rest from its
    card (now) or mandate (on the due date)."""
    if not await project_invoice(session, event):
        return
    tenant, invoice_id = event.tenant, event.data.invoice_id
    invoice = await invoice_repo.lock_invoice(session, tenant, invoice_id=invoice_id, number=None)
    await pay_from_balance(runtime, session, tenant, invoice, open_of(invoice), event.data.issued_on)
    await schedule_attempt(runtime, session, tenant, invoice_id, 1)


async def on_retry_requested(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentRetryRequested]) -> None:
    """Dunning asks to try again: dunning's retry n is attempt n + 1 (attempt 1 is the
    collection on issue), so the same request twice is one attempt."""
    await schedule_attempt(runtime, session, event.tenant, event.data.invoice_id, event.data.attempt + 1)


async def schedule_attempt(runtime: ServiceRuntime, session: AsyncSession, tenant: str, invoice_id: str, attempt_no: int) -> str | None:
    """Write attempt `attempt_no` for the invoice if something is open, the buyer has a card or
    mandate, and no other attempt is still in flight. Returns the attempt id, or None."""
    with tracer.start_as_current_span("schedule_attempt", attributes={"billing.invoice_id": invoice_id, "billing.attempt": attempt_no}):
        invoice = await invoice_repo.lock_invoice(session, tenant, invoice_id=invoice_id, number=None)
        if invoice is None or open_of(invoice) <= 0:
            return None
        attempts = await repo.attempts_of(session, tenant, invoice_id)
        if any(a.status in {"pending", "unknown"} for a in attempts):
            return None
        method = await methods_repo.collecting_method(session, tenant, invoice.account_id)
        if method is None:
            return None
        today = runtime.clock.today()
        attempt_id = make_attempt_id(invoice_id, attempt_no)
        now = runtime.clock.now()
        created = await repo.insert_attempt(session, {
            "attempt_id": attempt_id, "tenant": tenant, "invoice_id": invoice_id, "attempt_no": attempt_no, "method_id": method.method_id,
            "provider": method.provider, "method": method.type, "amount": open_of(invoice), "currency": invoice.currency,
            "charge_on": max(invoice.due_on, today) if method.type == "direct_debit" else today,
            "idempotency_key": provider_key("attempt", tenant, invoice_id, str(attempt_no)),
            "status": "pending", "calls": 0, "created_at": now, "updated_at": now,
        })
        return attempt_id if created else None


# --- settling attempts -----------------------------------------------------------------------


async def apply_outcome(runtime: ServiceRuntime, session: AsyncSession, attempt: Any, outcome: Outcome, *, may_reverse: bool = False) -> str:
    """Move an attempt (locked by the caller) to what the provider says. A final state is only
    left for a late failure (`may_reverse`: a collected direct debit returned by the bank)."""
    values: dict[str, Any] = {"updated_at": runtime.clock.now()}
    if outcome.provider_ref and not attempt.provider_ref:
        values["provider_ref"] = outcome.provider_ref
    effect = "unchanged"
    if outcome.status == "succeeded" and attempt.status != "succeeded" and attempt.status != "failed":
        values["status"] = "succeeded"
        invoice = await invoice_repo.lock_invoice(session, attempt.tenant, invoice_id=attempt.invoice_id, number=None)
        await record_received(
            runtime, session, attempt.tenant, invoice, payment_id=attempt.attempt_id, amount=attempt.amount, method=attempt.method,
            provider=attempt.provider, paid_on=runtime.clock.today(), reference=outcome.provider_ref or attempt.provider_ref,
        )
        effect = "succeeded"
    elif outcome.status == "failed" and attempt.status != "failed" and (attempt.status != "succeeded" or may_reverse):
        values.update(status="failed", reason_code=outcome.reason_code, reason=outcome.reason)
        if attempt.status == "succeeded":
            await _reverse(session, attempt)
        await _emit_failed(runtime, session, attempt, outcome)
        effect = "failed" if attempt.status != "succeeded" else "reversed"
    elif outcome.status == "pending" and attempt.status == "unknown":
        values["status"] = "pending"
        effect = "pending"
    await repo.update_attempt(session, attempt.attempt_id, **values)
    if effect in {"succeeded", "failed", "reversed"}:
        ATTEMPTS.labels(attempt.provider, effect).inc()
    return effect


async def _reverse(session: AsyncSession, attempt: Any) -> None:
    if await payment_repo.reverse_payment(session, attempt.tenant, attempt.attempt_id):
        await invoice_repo.add_received(session, attempt.invoice_id, -attempt.amount)


async def _emit_failed(runtime: ServiceRuntime, session: AsyncSession, attempt: Any, outcome: Outcome) -> None:
    invoice = await invoice_repo.get_invoice(session, attempt.tenant, attempt.invoice_id)
    event = PaymentFailed(
        payment_id=attempt.attempt_id, invoice_id=attempt.invoice_id, seller_id=invoice.seller_id, account_id=invoice.account_id,
        amount=EventMoney.of(attempt.amount, attempt.currency), method=attempt.method, provider=attempt.provider,
        failed_on=runtime.clock.today(), reason_code=outcome.reason_code or "unknown", reason=outcome.reason or "the provider gave no reason",
    )
    kind = "reversed" if attempt.status == "succeeded" else "failed"
    event_id = derived_event_id("payment_failed", attempt.tenant, attempt.attempt_id, kind)
    await runtime.outbox.add(session, runtime.event(event, tenant=attempt.tenant, event_id=event_id, subject=attempt.attempt_id))


# --- the worker --------------------------------------------------------------------------------


async def call_next_attempt(runtime: ServiceRuntime, gateways: Gateways, reconcile_after: float) -> bool:
    """Call the provider for one waiting attempt; False when there was none."""
    async with runtime.transaction() as session:
        attempt = await repo.next_attempt_to_call(session, runtime.clock.now())
        if attempt is None:
            return False
        with tracer.start_as_current_span(
            "collect_attempt", attributes={"billing.attempt_id": attempt.attempt_id, "billing.provider": attempt.provider, "billing.status": attempt.status}
        ):
            creds = await providers_repo.get(session, attempt.tenant, attempt.provider)
            method = await methods_repo.get_method(session, attempt.tenant, attempt.method_id)
            calls = attempt.calls + 1
            try:
                outcome = await _call_provider(gateways, attempt, creds, method)
            except ProviderUnavailable as exc:
                PROVIDER_CALLS.labels(attempt.provider, "collect", "unavailable").inc()
                log.warning("attempt %s: %s did not answer (%s); reconciling later", attempt.attempt_id, attempt.provider, type(exc).__name__)
                await repo.update_attempt(
                    session, attempt.attempt_id, status="unknown", calls=calls,
                    next_call_at=runtime.clock.now() + timedelta(seconds=reconcile_after * min(calls, 10)), updated_at=runtime.clock.now(),
                )
                return True
            PROVIDER_CALLS.labels(attempt.provider, "collect", outcome.status).inc()
            await repo.update_attempt(session, attempt.attempt_id, calls=calls, next_call_at=None)
            await apply_outcome(runtime, session, attempt, outcome)
            return True


async def _call_provider(gateways: Gateways, attempt: Any, creds: Any, method: Any) -> Outcome:
    if creds is None or method is None or method.method_ref is None:
        return Outcome("failed", None, "payment_method_unavailable", "the seller's provider account or the buyer's payment method is gone")
    metadata = {"attempt_id": attempt.attempt_id, "invoice_id": attempt.invoice_id, "tenant": attempt.tenant}
    amount = to_minor(attempt.amount, attempt.currency)
    if attempt.provider == "stripe":
        if attempt.status == "unknown":
            # Ask first: an earlier call may have charged even though its answer was lost.
            found = await gateways.stripe.find_charge(creds.api_key, method.customer_ref, attempt.attempt_id)
            if found is not None:
                return found
        return await gateways.stripe.charge(creds.api_key, method.customer_ref, method.method_ref, amount, attempt.currency, attempt.idempotency_key, metadata)
    # GoCardless answers a repeated idempotency key with the payment first created (the SDK follows
    # the 409), so asking and retrying are one call.
    return await gateways.gocardless.create_payment(
        creds.api_key, method.method_ref, amount, attempt.currency, attempt.charge_on, attempt.idempotency_key, metadata, None
    )
