"""Giving money back: for credit notes, and the surplus of a second success.

A credit note lowers what its invoice asks. What the buyer paid beyond the new figure goes back
as the seller chose on the credit note (`refund_to`), spread over the invoice's payments newest
first, one refund per payment (`<credit note>:<payment>`):

- `original_method`: a card or direct-debit payment is refunded through Stripe or GoCardless
  under an idempotency key stored with the refund before the call; a bank transfer is paid back
  by a SEPA credit transfer file (pain.001) from the seller's account to the buyer's; what the
  buyer's balance paid goes back to the balance;
- `buyer_balance`: kept as the buyer's balance, which its next invoices consume before collecting.

Each refund done is a PaymentRefunded carrying the credit note's id and number, in the same
transaction as its effect. A credit note is acted on once (`credit_note_applied`), a refund row
is written once, and a provider call is repeated only under its first idempotency key, so a
replayed event, a retried request or a replayed webhook never gives money back twice. A refund
the provider refuses goes to the buyer's balance instead, with the provider's reason: never kept silently.

A second success on an invoice already paid (collection, README "Second successes") is given back
the same way when the seller's collection setting says `refund`: a refund `surplus:<attempt>` with
no credit note, through the provider that took it (`refund_surplus`). It is sent, settled, and
announced (PaymentRefunded without a credit note) by the same code as a credit note's refunds;
refused, it stays the buyer's credit, as if the setting had said `credit`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum import iban as iban_number

from billing_events import CloudEvent, CreditNoteIssued, PaymentRefunded, derived_event_id
from billing_events import Money as EventMoney
from billing_events.money import open_amount
from billing_runtime.errors import Unprocessable
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from payments.balance.service import ACCOUNT_CREDIT, credit_balance
from payments.collection import repository as collection_repo
from payments.invoice import repository as invoice_repo
from payments.keys import provider_key
from payments.providers import repository as providers_repo
from payments.providers.gateways import Gateways, Outcome, ProviderUnavailable, provider_units, stripe_refund_status
from payments.providers.service import keyring
from payments.refund import repository as repo
from payments.refund.sepa import Account, refund_file

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

REFUNDS = Counter("billing_refunds_total", "Refunds, by provider and outcome", ["provider", "outcome"])
REFUNDED_AMOUNT = Counter(
    "billing_refunded_amount_total", "Money given back for credit notes and second successes, in major units, by where it went", ["currency", "provider"]
)
REFUND_PROVIDER_CALLS = Counter("billing_refund_provider_calls_total", "Refund calls to providers, by provider and result", ["provider", "result"])
start_at_zero(REFUNDS, ("stripe", "gocardless"), ("succeeded", "refused"))
CREDIT_NOTES_APPLIED = Counter("billing_payments_credit_notes_applied_total", "Credit notes acted on, by whether money went back", ["refund_to", "effect"])

SEPA = "sepa_credit_transfer"
SELLER = "seller"  # the owner of the seller's own bank account row
PROVIDER_REFUNDS = {"stripe", "gocardless"}
_FILE_NAMESPACE = uuid.UUID("5b0e2f4a-9c71-4d38-b6a5-0f3e8d2c1a97")


def route(refund_to: str, provider: str, method: str) -> tuple[str, str]:
    """(provider, method) a payment's refund goes through."""
    if refund_to == "buyer_balance" or provider == ACCOUNT_CREDIT:
        return ACCOUNT_CREDIT, ACCOUNT_CREDIT
    if provider in PROVIDER_REFUNDS:
        return provider, method
    return SEPA, "bank_transfer"


def to_return(total: Decimal, credited_before: Decimal, received: Decimal, credited: Decimal) -> Decimal:
    """What of the money received this credit makes too much (an earlier overpayment is not its doing)."""
    over_before = max(-open_amount(total, received, credited_before), Decimal(0))
    over_after = max(-open_amount(total, received, credited_before + credited), Decimal(0))
    return over_after - over_before


# --- the credit note -------------------------------------------------------------------------


class CreditedInvoiceUnknown(Unprocessable, ValueError):
    """A CreditNoteIssued for an invoice payments never learnt of: not applied (dead-lettered)."""

    code = "unknown_invoice"


async def on_credit_note_issued(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[CreditNoteIssued]) -> None:
    """Lower what the invoice asks and give back what that makes too much, as the seller chose."""
    data, tenant = event.data, event.tenant
    attributes = {"billing.invoice_id": data.invoice_id, "billing.credit_note_id": data.credit_note_id}
    with tracer.start_as_current_span("apply_credit_note", attributes=attributes) as span:
        invoice = await invoice_repo.lock_invoice(session, tenant, invoice_id=data.invoice_id, number=None)
        if invoice is None:
            raise CreditedInvoiceUnknown(f"credit note {data.credit_note_id} is for invoice {data.invoice_id}, unknown here")
        credited = abs(data.total.amount)
        refund_to = data.refund_to or "original_method"
        excess = to_return(invoice.total, invoice.amount_credited, invoice.amount_received, credited)
        span.set_attributes({"billing.refund_to": refund_to, "billing.to_return": str(excess)})
        claimed = await repo.claim_credit_note(
            session,
            {
                "tenant": tenant,
                "credit_note_id": data.credit_note_id,
                "invoice_id": data.invoice_id,
                "amount": credited,
                "currency": invoice.currency,
                "refund_to": refund_to,
                "to_return": excess,
                "applied_at": runtime.clock.now(),
            },
        )
        if not claimed:
            CREDIT_NOTES_APPLIED.labels(refund_to, "duplicate").inc()
            return
        await invoice_repo.add_credited(session, data.invoice_id, credited)
        CREDIT_NOTES_APPLIED.labels(refund_to, "refund" if excess > 0 else "nothing_to_return").inc()
        if excess <= 0:
            return
        now = runtime.clock.now()
        rows: list[dict[str, Any]] = []
        for paid in await repo.refundable_payments(session, tenant, data.invoice_id):
            amount = min(paid.refundable, excess)
            if amount <= 0:
                continue
            provider, method = route(refund_to, paid.provider, paid.method)
            refund_id = f"{data.credit_note_id}:{paid.payment_id}"
            rows.append(
                {
                    "refund_id": refund_id,
                    "tenant": tenant,
                    "credit_note_id": data.credit_note_id,
                    "credit_note_number": data.number,
                    "invoice_id": data.invoice_id,
                    "payment_id": paid.payment_id,
                    "attempt_id": paid.payment_id if provider in PROVIDER_REFUNDS else None,
                    "provider": provider,
                    "method": method,
                    "refund_to": refund_to,
                    "amount": amount,
                    "currency": invoice.currency,
                    "idempotency_key": provider_key("refund", tenant, refund_id),
                    "status": "pending",
                    "calls": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            excess -= amount
            if excess <= 0:
                break
        written = set(await repo.insert_refunds(session, rows))
        for row in rows:
            if row["refund_id"] in written and row["provider"] == ACCOUNT_CREDIT:
                await _to_balance(runtime, session, invoice, row, kind="credit_note")
        if excess > 0:
            # Received but on no payment left to refund (should not happen): kept for the buyer, and said so.
            log.warning("credit note %s: %s %s received beyond the payments; kept as the buyer's balance", data.credit_note_id, excess, invoice.currency)
            await credit_balance(session, tenant, invoice.account_id, invoice.currency, excess, kind="credit_note")


async def _to_balance(runtime: ServiceRuntime, session: AsyncSession, invoice: Any, refund: dict[str, Any], *, kind: str, reason: str | None = None) -> None:
    """A refund into the buyer's balance: done at once."""
    values = {"provider": ACCOUNT_CREDIT, "method": ACCOUNT_CREDIT, "refund_to": "buyer_balance", "status": "succeeded", "updated_at": runtime.clock.now()}
    if reason is not None:
        values["reason"] = reason
    await repo.update_refund(session, refund["refund_id"], **values)
    await credit_balance(session, refund["tenant"], invoice.account_id, refund["currency"], refund["amount"], kind=kind)
    await _refunded(runtime, session, invoice, {**refund, **values})


async def _refunded(runtime: ServiceRuntime, session: AsyncSession, invoice: Any, refund: Any) -> None:
    """Money has gone back: the invoice has received that much less; tell everyone, linked to the credit note."""
    r = refund if isinstance(refund, dict) else dict(refund._mapping)
    await invoice_repo.add_received(session, r["invoice_id"], -r["amount"])
    event = PaymentRefunded(
        refund_id=r["refund_id"],
        payment_id=r["payment_id"],
        invoice_id=r["invoice_id"],
        seller_id=invoice.seller_id,
        account_id=invoice.account_id,
        amount=EventMoney.of(r["amount"], r["currency"]),
        refunded_on=runtime.clock.today(),
        credit_note_id=r["credit_note_id"],
        credit_note_number=r.get("credit_note_number"),
        refund_to=r.get("refund_to") or "original_method",
        method=r.get("method"),
        provider=r["provider"],
        provider_ref=r.get("provider_ref"),
    )
    event_id = derived_event_id("payment_refunded", r["tenant"], r["refund_id"])
    await runtime.outbox.add(session, runtime.event(event, tenant=r["tenant"], event_id=event_id, subject=r["refund_id"]))
    REFUNDS.labels(r["provider"], "succeeded").inc()
    REFUNDED_AMOUNT.labels(r["currency"], r["provider"]).inc(float(r["amount"]))  # a metric, not a ledger


async def refund_surplus(runtime: ServiceRuntime, session: AsyncSession, attempt: Any, account_id: str, surplus: Decimal) -> bool:
    """Give back through its provider what a success brought beyond what the invoice still asked
    (collection's second success; record_received made it the buyer's credit, which it leaves):
    a refund `surplus:<attempt>` without a credit note, written once, sent by `call_next_refund`.
    False when it was written before."""
    now = runtime.clock.now()
    refund_id = f"surplus:{attempt.attempt_id}"
    row = {
        "refund_id": refund_id,
        "tenant": attempt.tenant,
        "credit_note_id": None,
        "credit_note_number": None,
        "invoice_id": attempt.invoice_id,
        "payment_id": attempt.attempt_id,
        "attempt_id": attempt.attempt_id,
        "provider": attempt.provider,
        "method": attempt.method,
        "refund_to": "original_method",
        "amount": surplus,
        "currency": attempt.currency,
        "idempotency_key": provider_key("refund", attempt.tenant, refund_id),
        "status": "pending",
        "calls": 0,
        "created_at": now,
        "updated_at": now,
    }
    with tracer.start_as_current_span("refund_surplus", attributes={"billing.refund_id": refund_id, "billing.amount": str(surplus)}):
        if not await repo.insert_refunds(session, [row]):
            return False
        await collection_repo.add_credit(session, attempt.tenant, account_id, attempt.currency, -surplus)
        return True


async def remember_payer_account(runtime: ServiceRuntime, session: AsyncSession, tenant: str, account_id: str, name: str | None, iban: str | None) -> bool:
    """The account a buyer paid a bank transfer from (a statement line's debtor), kept as where its
    refunds go unless one is set already; False when the line names no usable account."""
    if not name or not iban or not iban_number.is_valid(iban):
        return False
    row = {"tenant": tenant, "owner": account_id, "name": name[:70], "iban": iban_number.compact(iban), "bic": None, "updated_at": runtime.clock.now()}
    await repo.keep_bank_account(session, row)
    return True


# --- the worker: provider refunds and refund files ---------------------------------------------


async def call_next_refund(runtime: ServiceRuntime, gateways: Gateways, reconcile_after: float) -> bool:
    """Act on one waiting refund (call the provider, or write the SEPA file); False when there was none."""
    async with runtime.transaction() as session:
        refund = await repo.next_refund_to_call(session, runtime.clock.now())
        if refund is None:
            return False
        with tracer.start_as_current_span("refund_payment", attributes={"billing.refund_id": refund.refund_id, "billing.provider": refund.provider}):
            calls = refund.calls + 1
            if refund.provider == SEPA:
                await _write_refund_file(runtime, session, refund, calls, reconcile_after)
                return True
            creds = await providers_repo.get(session, keyring(runtime), refund.tenant, refund.provider)
            attempt = await collection_repo.get_attempt(session, refund.attempt_id or refund.payment_id)
            try:
                if creds is None or attempt is None or attempt.provider_ref is None:
                    outcome = Outcome("failed", None, "refund_impossible", "the seller's provider account or the payment is gone")
                else:
                    gateway = gateways.stripe if refund.provider == "stripe" else gateways.gocardless
                    # The same key on every call: a provider that acted on a lost call answers with that refund.
                    metadata = {"refund_id": refund.refund_id, "tenant": refund.tenant}
                    if refund.credit_note_id is not None:  # none for a second success's surplus
                        metadata["credit_note_id"] = refund.credit_note_id
                    outcome = await gateway.refund(
                        creds.api_key, attempt.provider_ref, provider_units(refund.provider, refund.amount, refund.currency), refund.idempotency_key, metadata
                    )
            except ProviderUnavailable:
                REFUND_PROVIDER_CALLS.labels(refund.provider, "unavailable").inc()
                await repo.update_refund(
                    session,
                    refund.refund_id,
                    status="unknown",
                    calls=calls,
                    next_call_at=runtime.clock.now() + timedelta(seconds=reconcile_after * min(calls, 10)),
                    updated_at=runtime.clock.now(),
                )
                return True
            REFUND_PROVIDER_CALLS.labels(refund.provider, outcome.status).inc()
            await repo.update_refund(session, refund.refund_id, calls=calls, next_call_at=None)
            await settle_refund(runtime, session, refund, outcome)
            return True


async def settle_refund(runtime: ServiceRuntime, session: AsyncSession, refund: Any, outcome: Outcome) -> str:
    """Move a refund (locked by the caller) to what the provider says; a final refund never moves again."""
    if refund.status in {"succeeded", "failed"}:
        return "unchanged"
    now = runtime.clock.now()
    if outcome.status == "pending":
        await repo.update_refund(session, refund.refund_id, provider_ref=outcome.provider_ref or refund.provider_ref, status="pending", updated_at=now)
        return "pending"
    invoice = await invoice_repo.get_invoice(session, refund.tenant, refund.invoice_id)
    if outcome.status == "failed" and refund.credit_note_id is None:
        # A second success's surplus: it stays the buyer's credit, where it was before the refund was written.
        REFUNDS.labels(refund.provider, "refused").inc()
        reason = f"{refund.provider} refused the refund ({outcome.reason_code}): {outcome.reason}; kept as the buyer's credit"
        ref = outcome.provider_ref or refund.provider_ref
        await repo.update_refund(session, refund.refund_id, status="failed", reason=reason, provider_ref=ref, updated_at=now)
        await credit_balance(session, refund.tenant, invoice.account_id, refund.currency, refund.amount, kind="refund_refused")
        if refund.attempt_id is not None:
            await collection_repo.update_attempt(session, refund.attempt_id, surplus_action="credit", updated_at=now)
        log.warning("surplus refund %s: %s", refund.refund_id, reason)
        return "to_balance"
    if outcome.status == "failed":
        REFUNDS.labels(refund.provider, "refused").inc()
        reason = f"{refund.provider} refused the refund ({outcome.reason_code}): {outcome.reason}; kept as the buyer's balance"
        await _to_balance(runtime, session, invoice, dict(refund._mapping), kind="refund_refused", reason=reason)
        return "to_balance"
    ref = outcome.provider_ref or refund.provider_ref
    await repo.update_refund(session, refund.refund_id, status="succeeded", provider_ref=ref, updated_at=now)
    await _refunded(runtime, session, invoice, {**refund._mapping, "provider_ref": ref})
    return "succeeded"


async def apply_stripe_refund(runtime: ServiceRuntime, session: AsyncSession, tenant: str, obj: dict[str, Any]) -> str:
    """A `refund.*` webhook: settles a refund whose call answered pending; a replay (or any event
    about a refund already final) changes nothing."""
    metadata = dict(obj.get("metadata") or {})
    refund = await repo.get_refund(session, tenant, str(metadata["refund_id"]), lock=True) if metadata.get("refund_id") else None
    if refund is None and obj.get("id"):
        refund = await repo.refund_by_ref(session, tenant, "stripe", str(obj["id"]))
    if refund is None:
        return "unknown_refund"
    status = stripe_refund_status(str(obj.get("status")))
    reason = obj.get("failure_reason")
    return await settle_refund(runtime, session, refund, Outcome(status, obj.get("id"), str(reason) if reason else None, "the card issuer refused the refund"))


async def _write_refund_file(runtime: ServiceRuntime, session: AsyncSession, refund: Any, calls: int, reconcile_after: float) -> None:
    """Pay a bank transfer back with a SEPA credit transfer file from the seller's account to the buyer's."""
    invoice = await invoice_repo.get_invoice(session, refund.tenant, refund.invoice_id)
    if refund.currency != "EUR":
        reason = f"a SEPA credit transfer is in EUR, not {refund.currency}; kept as the buyer's balance"
        await _to_balance(runtime, session, invoice, dict(refund._mapping), kind="refund_refused", reason=reason)
        return
    seller = await repo.get_bank_account(session, refund.tenant, SELLER)
    buyer = await repo.get_bank_account(session, refund.tenant, invoice.account_id)
    if seller is None or buyer is None:
        missing = (
            "the seller's bank account (PUT /v1/bank-account)"
            if seller is None
            else f"the buyer's bank account (PUT /v1/accounts/{invoice.account_id}/bank-account)"
        )
        await repo.update_refund(
            session,
            refund.refund_id,
            calls=calls,
            reason=f"waiting for {missing}",
            updated_at=runtime.clock.now(),
            next_call_at=runtime.clock.now() + timedelta(seconds=reconcile_after * min(calls, 10)),
        )
        return
    remittance = f"Refund {refund.credit_note_number or refund.credit_note_id} for invoice {invoice.number}"
    content = refund_file(
        Account(seller.name, seller.iban, seller.bic),
        Account(buyer.name, buyer.iban, buyer.bic),
        refund.amount,
        refund.currency,
        runtime.clock.today(),
        refund.refund_id,
        remittance,
    )
    file_id = str(uuid.uuid5(_FILE_NAMESPACE, f"{refund.tenant}:{refund.refund_id}"))
    await repo.insert_refund_file(
        session,
        {
            "tenant": refund.tenant,
            "file_id": file_id,
            "refund_id": refund.refund_id,
            "message_id": content.message_id,
            "end_to_end_id": content.end_to_end_id,
            "content": content.content,
            "created_at": runtime.clock.now(),
        },
    )
    await repo.update_refund(session, refund.refund_id, calls=calls, next_call_at=None, reason=None)
    await settle_refund(runtime, session, refund, Outcome("succeeded", file_id))
