"""Recording money received against an invoice.

A payment is recorded once per (seller, finance's payment id): the same request again returns
the first answer and changes nothing; the same id with other content is refused. Recording it
adds to the invoice's amount received and emits PaymentSucceeded in the same transaction.
An overpayment is recorded as it is, and the surplus becomes the buyer's credit for its next invoice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import Money, PaymentSucceeded, derived_event_id
from billing_events.events.payments import PaymentMethod
from billing_events.money import fits_minor_units, minor_units, open_amount
from billing_runtime.api import decode_keyset, encode_cursor, page_of
from billing_runtime.errors import Conflict, NotFound, Unprocessable
from billing_runtime.service import ServiceRuntime
from payments.collection import repository as collection_repo
from payments.invoice import repository as invoice_repo
from payments.invoice.service import open_and_overpaid
from payments.payment import repository as repo
from payments.payment.schemas import BankTransferIn, PaymentOut

tracer = trace.get_tracer(__name__)

PAYMENTS = Counter("billing_payments_total", "Payments recorded, by provider and outcome", ["provider", "outcome"])
COLLECTED = Counter("billing_payments_collected_amount_total", "Money recorded as received, by currency", ["currency"])

BANK_TRANSFER: Literal["bank_transfer"] = "bank_transfer"
_PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


class InvalidAmount(Unprocessable):
    code = "invalid_amount"


class InvalidInvoiceReference(Unprocessable):
    code = "invoice_reference_required"


class CurrencyMismatch(Unprocessable):
    code = "currency_mismatch"


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"


class PaymentNotFound(NotFound):
    code = "payment_not_found"


class PaymentIdConflict(Conflict):
    code = "payment_id_conflict"


def parse_amount(raw: object) -> Decimal:
    """A positive amount from a decimal string (or a whole number). Floats are refused: they
    have already lost the exact amount."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidAmount('amount must be a decimal string such as "1516.25"', field="amount")
    text = str(raw).strip()
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise InvalidAmount('amount must be a positive decimal string such as "1516.25"', field="amount")
    amount = Decimal(text)
    if amount <= 0:
        raise InvalidAmount("amount must be greater than zero", field="amount")
    return amount


@dataclass(frozen=True)
class InvoiceRef:
    invoice_id: str | None
    number: str | None


def invoice_reference(request: BankTransferIn) -> InvoiceRef:
    """Exactly one of invoice_id and invoice_number names the invoice paid."""
    if request.invoice_id is None and request.invoice_number is None:
        raise InvalidInvoiceReference("give invoice_id or invoice_number", field="invoice_id")
    if request.invoice_id is not None and request.invoice_number is not None:
        raise InvalidInvoiceReference("give invoice_id or invoice_number, not both", code="invoice_reference_ambiguous", field="invoice_number")
    return InvoiceRef(request.invoice_id, request.invoice_number)


def is_same_payment(stored: Any, request: BankTransferIn, amount: Decimal) -> bool:
    """Whether a repeated request asks for the payment already recorded under its id. Compared
    by meaning, not text: "100.0" and "100.00" are the same amount."""
    same_invoice = stored.invoice_id == request.invoice_id if request.invoice_id is not None else stored.invoice_number == request.invoice_number
    return (
        same_invoice
        and stored.amount == amount
        and stored.currency == request.currency
        and stored.received_on == request.received_on
        and stored.reference == request.reference
    )


def payment_out(values: Mapping[str, Any]) -> PaymentOut:
    """The API view of a payment row (stored or just built); the column names are the fields."""
    return PaymentOut.model_validate(dict(values))


def _repeat(stored: Any, request: BankTransferIn, amount: Decimal) -> PaymentOut:
    if not is_same_payment(stored, request, amount):
        PAYMENTS.labels(stored.provider, Outcome.CONFLICT).inc()
        raise PaymentIdConflict(f"payment {request.id!r} was already recorded with other details; nothing was changed", field="id")
    PAYMENTS.labels(stored.provider, Outcome.DUPLICATE).inc()
    return payment_out(stored._mapping)


async def record_bank_transfer(runtime: ServiceRuntime, session: AsyncSession, tenant: str, request: BankTransferIn) -> tuple[PaymentOut, bool]:
    """Record a bank transfer the seller `tenant` received; returns (payment, newly recorded)."""
    with tracer.start_as_current_span(
        "record_payment", attributes={"billing.tenant": tenant, "billing.payment_id": request.id, "billing.provider": BANK_TRANSFER}
    ):
        try:
            return await _record(runtime, session, tenant, request)
        except (InvalidAmount, InvalidInvoiceReference, CurrencyMismatch, InvoiceNotFound):
            PAYMENTS.labels(BANK_TRANSFER, Outcome.REJECTED).inc()
            raise


async def _record(runtime: ServiceRuntime, session: AsyncSession, tenant: str, request: BankTransferIn) -> tuple[PaymentOut, bool]:
    ref = invoice_reference(request)
    amount = parse_amount(request.amount)

    stored = await repo.get_payment(session, tenant, request.id)
    if stored is not None:
        return _repeat(stored, request, amount), False

    invoice = await invoice_repo.lock_invoice(session, tenant, invoice_id=ref.invoice_id, number=ref.number)
    if invoice is None:
        which = f"id {ref.invoice_id!r}" if ref.invoice_id is not None else f"number {ref.number!r}"
        raise InvoiceNotFound(f"no invoice with {which} of yours is known", field="invoice_id" if ref.invoice_id else "invoice_number")
    if request.currency != invoice.currency:
        raise CurrencyMismatch(f"invoice {invoice.number} is in {invoice.currency}, not {request.currency}", field="currency")
    if not fits_minor_units(amount, invoice.currency):
        raise InvalidAmount(f"{invoice.currency} amounts have at most {minor_units(invoice.currency)} decimals", field="amount")

    row = await record_received(
        runtime,
        session,
        tenant,
        invoice,
        payment_id=request.id,
        amount=amount,
        method=BANK_TRANSFER,
        provider=BANK_TRANSFER,
        paid_on=request.received_on,
        reference=request.reference,
    )
    if row is None:
        # A concurrent request with the same id committed first: answer as for a repeat.
        winner = await repo.get_payment(session, tenant, request.id)
        return _repeat(winner, request, amount), False
    return payment_out(row), True


async def record_received(
    runtime: ServiceRuntime,
    session: AsyncSession,
    tenant: str,
    invoice: Any,
    *,
    payment_id: str,
    amount: Decimal,
    method: PaymentMethod,
    provider: str,
    paid_on: date,
    reference: str | None,
) -> dict[str, Any] | None:
    """Record money received against `invoice` (locked by the caller) and emit PaymentSucceeded,
    in the caller's transaction. What goes beyond the invoice's open amount becomes the buyer's
    credit for its next invoice. None if `payment_id` is already recorded."""
    open_after, overpaid = open_and_overpaid(invoice.total, invoice.amount_received + amount, invoice.amount_credited, invoice.currency)
    row = {
        "tenant": tenant,
        "payment_id": payment_id,
        "invoice_id": invoice.invoice_id,
        "invoice_number": invoice.number,
        "seller_id": invoice.seller_id,
        "account_id": invoice.account_id,
        "amount": amount,
        "currency": invoice.currency,
        "received_on": paid_on,
        "method": method,
        "provider": provider,
        "reference": reference,
        "status": Outcome.SUCCEEDED.value,
        "open_after": open_after,
        "overpaid": overpaid,
        "recorded_at": runtime.clock.now(),
    }
    if not await repo.insert_payment(session, row):
        return None
    await invoice_repo.add_received(session, invoice.invoice_id, amount)
    already_over = max(-open_amount(invoice.total, invoice.amount_received, invoice.amount_credited), Decimal(0))
    surplus = overpaid - already_over
    if surplus > 0:
        await collection_repo.add_credit(session, tenant, invoice.account_id, invoice.currency, surplus)
    event = PaymentSucceeded(
        payment_id=payment_id,
        invoice_id=invoice.invoice_id,
        seller_id=invoice.seller_id,
        account_id=invoice.account_id,
        amount=Money.of(amount, invoice.currency),
        method=method,
        provider=provider,
        paid_on=paid_on,
        reference=reference,
    )
    await runtime.outbox.add(
        session,
        runtime.event(event, tenant=tenant, event_id=derived_event_id("payment_succeeded", tenant, payment_id), subject=payment_id),
    )
    PAYMENTS.labels(provider, Outcome.SUCCEEDED).inc()
    COLLECTED.labels(invoice.currency).inc(float(amount))  # a metric, not a ledger: float is fine here
    return row


async def get_payment(session: AsyncSession, tenant: str, payment_id: str, *, account_id: str | None = None) -> PaymentOut:
    """One of the seller's payments (with `account_id`: only if that buyer made it)."""
    row = await repo.get_payment(session, tenant, payment_id, account_id=account_id)
    if row is None:
        raise PaymentNotFound(f"no payment {payment_id!r}")
    return payment_out(row._mapping)


async def list_payments(
    session: AsyncSession, tenant: str, *, invoice_id: str | None, limit: int, cursor: str | None, account_id: str | None = None
) -> tuple[list[PaymentOut], str | None]:
    """A page of the seller's payments in the order they were recorded, and the next cursor."""
    after = decode_keyset(cursor, datetime.fromisoformat)
    rows = await repo.list_payments(session, tenant, invoice_id=invoice_id, account_id=account_id, after=after, limit=limit + 1)
    page, next_cursor = page_of(rows, limit, lambda r: encode_cursor(r.recorded_at.isoformat(), r.payment_id))
    return [payment_out(r._mapping) for r in page], next_cursor
