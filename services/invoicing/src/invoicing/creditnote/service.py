"""Credit notes (BILLING-RULES §6, §7): full or partial (by line, or by a net amount spread over
the lines), referencing one issued invoice, open or paid, never above what is left creditable on it
(its total less earlier credit notes), taxed like the lines they credit (same category and rate, VAT
per rate on the sum of the credited nets).

What a credit note takes off beyond what is still unpaid is money to give back: the seller says
where (`refund_to`: the way it was paid, or the buyer's balance) and payments does it, answering
with PaymentRefunded events that carry the credit note's id. The credit note that leaves nothing
open settles an open invoice: `void` when nothing was paid, `paid` otherwise; a paid invoice stays paid."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CreditNoteIssued, Money, TaxBreakdown, derived_event_id
from billing_events import InvoiceLine as InvoiceLineEvent
from billing_events.events.invoicing import RefundDestination
from billing_events.money import fits_minor_units, minor_units, open_amount
from billing_runtime.errors import BillingError, Conflict, NotFound
from billing_runtime.idempotency import IdempotencyKeyReused
from billing_runtime.service import ServiceRuntime
from invoicing.config import Settings
from invoicing.creditnote import repository as repo
from invoicing.invoice import repository as invoice_repo
from invoicing.invoice.service import breakdown_of, settled_event
from invoicing.numbering.service import format_credit_note_number, reserve_credit_note
from invoicing.seller.service import get_seller

tracer = trace.get_tracer(__name__)
CREDIT_NOTES_ISSUED = Counter("billing_credit_notes_issued_total", "Credit notes issued", ["currency", "kind"])
AMOUNT_CREDITED = Counter("billing_credited_amount_total", "Sum of credit note totals, in major units", ["currency"])
AMOUNT_TO_RETURN = Counter(
    "billing_credit_note_amount_to_return_total", "Money paid that credit notes give back, in major units, by where it goes", ["currency", "refund_to"]
)

_NAMESPACE = uuid.UUID("9a4c1f8e-2b7d-5e3a-8c6f-1d0e4b2a7f93")


class CreditExceedsCreditableAmount(Conflict):
    code = "credit_exceeds_creditable_amount"


class InvoiceNotCreditable(Conflict):
    code = "invoice_not_creditable"


class InvalidCreditLine(BillingError):
    code = "invalid_credit_line"


async def existing_credit_note(session: AsyncSession, seller_id: str, credit_note_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's credit note (with `buyer_account_id`: only if it is that buyer's), else 404 `credit_note_not_found`."""
    row = await repo.get(session, seller_id, credit_note_id, buyer_account_id=buyer_account_id)
    if row is None:
        raise NotFound(f"no credit note {credit_note_id!r}", code="credit_note_not_found")
    return row


@dataclass(frozen=True)
class CreditRequestLine:
    line_id: str
    amount: Decimal


@dataclass(frozen=True)
class CreditLine:
    source: Any  # the invoice line
    net: Decimal


def spread(amount: Decimal, remaining: list[tuple[Any, Decimal]], currency: str) -> list[CreditLine]:
    """`amount` (net, in minor units of `currency`) over the lines with something left to credit, in
    proportion to what is left of each: whole minor units, the leftover units to the largest
    remainders (then the earlier line), so the shares add up to `amount` exactly and none exceeds its line."""
    scale = Decimal(10) ** minor_units(currency)
    open_lines = [(line, left) for line, left in remaining if left > 0]
    pool = sum((left for _, left in open_lines), Decimal(0))
    units = int(amount * scale)
    shares: list[list[Any]] = []
    for position, (line, left) in enumerate(open_lines):
        exact = Decimal(units) * left / pool
        shares.append([line, int(exact), exact - int(exact), position])
    for share in sorted(shares, key=lambda s: (-s[2], s[3]))[: units - sum(s[1] for s in shares)]:
        share[1] += 1
    return [CreditLine(line, Decimal(whole) / scale) for line, whole, _, _ in shares if whole > 0]


def amount_to_return(total: Decimal, amount_paid: Decimal, credited_before: Decimal, credit: Decimal) -> Decimal:
    """What of the money paid a credit of `credit` makes too much: paid beyond what the invoice asks
    after it, less what was already too much before it (an overpayment is not this credit's doing)."""
    over_before = max(-open_amount(total, amount_paid, credited_before), Decimal(0))
    over_after = max(-open_amount(total, amount_paid, credited_before + credit), Decimal(0))
    return over_after - over_before


def credit_note_id_for(seller_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"credit_note:{seller_id}:{idempotency_key}"))


def credit_breakdown(lines: list[CreditLine], currency: str, invoice_breakdown: list[dict[str, Any]]) -> list[TaxBreakdown]:
    """VAT per (category, rate) on the sum of the credited nets, rounded once, with the invoice's legal mentions."""
    notes = {(entry["tax_category"], Decimal(entry["rate"])): entry.get("note") for entry in invoice_breakdown}
    taxable: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    for line in lines:
        taxable[(line.source.tax_category, line.source.tax_rate)] += line.net
    return breakdown_of(taxable, notes, currency)


async def issue_credit_note(
    runtime: ServiceRuntime[Settings],
    session: AsyncSession,
    seller_id: str,
    invoice_id: str,
    idempotency_key: str,
    *,
    reason: str | None,
    lines: list[CreditRequestLine] | None,
    amount: Decimal | None = None,
    refund_to: RefundDestination | None = None,
) -> str:
    """Issue a credit note against an issued invoice, open or paid: `lines` and `amount` None
    credits everything not yet credited; `lines` credits that much of each line's net; `amount`
    credits that net spread over the lines. Money paid that the credit makes too much goes back
    as `refund_to` says (default: the way it was paid). Returns its id; posting the same
    Idempotency-Key again returns the first credit note and changes nothing."""
    with tracer.start_as_current_span("issue_credit_note", attributes={"billing.invoice_id": invoice_id, "billing.seller_id": seller_id}) as span:
        numbers = await reserve_credit_note(session, seller_id)
        existing = await repo.find_by_key(session, seller_id, idempotency_key)
        if existing is not None:
            if existing.invoice_id != invoice_id:
                raise IdempotencyKeyReused(f"Idempotency-Key {idempotency_key!r} was used for credit note {existing.number} of another invoice")
            return str(existing.credit_note_id)
        invoice = await invoice_repo.lock_invoice(session, seller_id, invoice_id)
        if invoice is None:
            raise NotFound(f"no invoice {invoice_id!r}", code="invoice_not_found")
        creditable = invoice.total - invoice.credited_total
        if invoice.status == "void" or creditable <= 0:
            raise InvoiceNotCreditable(f"invoice {invoice.number} is credited in full already: nothing is left to credit")
        currency = invoice.currency
        invoice_lines = await invoice_repo.get_lines(session, invoice_id)
        credited = await repo.credited_per_line(session, seller_id, invoice_id)
        remaining = {li.line_id: li.net - credited.get(li.line_id, Decimal(0)) for li in invoice_lines}
        by_id = {li.line_id: li for li in invoice_lines}
        if amount is not None:
            if amount <= 0 or not fits_minor_units(amount, currency):
                raise InvalidCreditLine(f"credit amount {amount} is not a positive {currency} amount", field="amount")
            left = sum((value for value in remaining.values() if value > 0), Decimal(0))
            if amount > left:
                raise InvalidCreditLine(f"credit amount {amount} is more than the {left} {currency} net not yet credited", field="amount")
            chosen = spread(amount, [(li, remaining[li.line_id]) for li in invoice_lines], currency)
        elif lines is None:
            chosen = [CreditLine(li, remaining[li.line_id]) for li in invoice_lines if remaining[li.line_id] != 0]
        else:
            chosen = []
            for request in lines:
                source = by_id.get(request.line_id)
                if source is None:
                    raise InvalidCreditLine(f"invoice {invoice.number} has no line {request.line_id!r}", field="lines")
                if request.amount <= 0 or not fits_minor_units(request.amount, currency):
                    raise InvalidCreditLine(f"credit for line {request.line_id!r}: {request.amount} is not a positive {currency} amount", field="lines")
                if request.amount > remaining[request.line_id]:
                    raise InvalidCreditLine(
                        f"credit for line {request.line_id!r}: {request.amount} is more than its {remaining[request.line_id]} not yet credited", field="lines"
                    )
                chosen.append(CreditLine(source, request.amount))
            if len({request.line_id for request in lines}) != len(lines):
                raise InvalidCreditLine("a line appears twice", field="lines")
        breakdown = credit_breakdown(chosen, currency, invoice.tax_breakdown)
        net_total = sum((c.net for c in chosen), Decimal(0))
        tax_total = sum((b.tax.amount for b in breakdown), Decimal(0))
        total = net_total + tax_total
        if total <= 0:
            raise InvalidCreditLine(f"nothing to credit on invoice {invoice.number}", field="lines")
        if total > creditable:
            raise CreditExceedsCreditableAmount(f"credit of {total} {currency} exceeds the {creditable} {currency} left creditable on invoice {invoice.number}")
        destination: RefundDestination = refund_to or "original_method"
        to_return = amount_to_return(invoice.total, invoice.amount_paid, invoice.credited_total, total)

        seller = await get_seller(runtime, session, seller_id)
        seq = await numbers.take()
        number = format_credit_note_number(seller.invoice_prefix, seq)
        credit_note_id = credit_note_id_for(seller_id, idempotency_key)
        issued_on = runtime.clock.today()
        span.set_attributes({"billing.credit_note_id": credit_note_id, "billing.credit_note_number": number})
        await repo.insert_credit_note(
            session,
            credit_note={
                "credit_note_id": credit_note_id,
                "seller_id": seller_id,
                "idempotency_key": idempotency_key,
                "invoice_id": invoice_id,
                "buyer_account_id": invoice.buyer_account_id,
                "seq": seq,
                "number": number,
                "issued_on": issued_on,
                "currency": currency,
                "reason": reason,
                "net_total": net_total,
                "tax_total": tax_total,
                "total": total,
                "tax_breakdown": [b.model_dump(mode="json") for b in breakdown],
                "issued_at": runtime.clock.now(),
                "refund_to": destination,
                "amount_to_return": to_return,
            },
            lines=[_line_row(credit_note_id, position, c) for position, c in enumerate(chosen, start=1)],
        )
        credited_total = invoice.credited_total + total
        settles = invoice.status == "open" and open_amount(invoice.total, invoice.amount_paid, credited_total) <= 0
        status = ("void" if invoice.amount_paid == 0 else "paid") if settles else invoice.status
        await invoice_repo.record_credit(
            session,
            seller_id,
            invoice_id,
            credited_total,
            status=status,
            paid_on=issued_on if settles and status == "paid" else None,
            voided_on=issued_on if settles and status == "void" else None,
        )
        event = CreditNoteIssued(
            credit_note_id=credit_note_id,
            number=number,
            invoice_id=invoice_id,
            invoice_number=invoice.number,
            seller_id=seller_id,
            buyer_account_id=invoice.buyer_account_id,
            issued_on=issued_on,
            currency=currency,
            net_total=Money.of(-net_total, currency),
            tax_total=Money.of(-tax_total, currency),
            total=Money.of(-total, currency),
            reason=reason,
            lines=[_line_event(c, currency) for c in chosen],
            tax_breakdown=[_negated(b) for b in breakdown],
            refund_to=destination,
        )
        events = [runtime.event(event, tenant=seller_id, event_id=derived_event_id("credit_note_issued", credit_note_id), subject=credit_note_id)]
        if settles:
            paid = Money.of(invoice.amount_paid, currency)
            events.append(settled_event(runtime, invoice_id, invoice.number, seller_id, invoice.buyer_account_id, issued_on, paid))
        await runtime.outbox.add(session, *events)
        span.set_attributes({"billing.refund_to": destination, "billing.amount_to_return": str(to_return), "billing.invoice_status": invoice.status})
        CREDIT_NOTES_ISSUED.labels(currency, "full" if lines is None and amount is None else "partial").inc()
        AMOUNT_CREDITED.labels(currency).inc(float(total))
        if to_return > 0:
            AMOUNT_TO_RETURN.labels(currency, destination).inc(float(to_return))
        return credit_note_id


def _line_row(credit_note_id: str, position: int, line: CreditLine) -> dict[str, Any]:
    src = line.source
    return {
        "credit_note_id": credit_note_id,
        "position": position,
        "line_id": src.line_id,
        "product_code": src.product_code,
        "description": src.description,
        "service_period_start": src.service_period_start,
        "service_period_end": src.service_period_end,
        # A partial credit of a line credits an amount, not units: the quantity is the share of it.
        "quantity": src.quantity if line.net == src.net else Decimal(1),
        "unit_price": src.unit_price if line.net == src.net else line.net,
        "net": line.net,
        "tax_rate": src.tax_rate,
        "tax_category": src.tax_category,
        "tax_scheme": src.tax_scheme,
        "tax_country": src.tax_country,
    }


def _line_event(line: CreditLine, currency: str) -> InvoiceLineEvent:
    src = line.source
    full = line.net == src.net
    return InvoiceLineEvent(
        line_id=src.line_id,
        product_code=src.product_code,
        description=src.description,
        service_period_start=src.service_period_start,
        service_period_end=src.service_period_end,
        quantity=src.quantity if full else Decimal(1),
        unit_price=Money.of(src.unit_price if full else line.net, currency),
        net=Money.of(-line.net, currency),
        tax_rate=src.tax_rate,
        tax_category=src.tax_category,
        end_customer_id=src.end_customer_id,
        category=src.category,
        tax_scheme=src.tax_scheme,
        tax_country=src.tax_country,
        late=src.late,
    )


def _negated(entry: TaxBreakdown) -> TaxBreakdown:
    return entry.model_copy(update={"taxable": Money.of(-entry.taxable.amount, entry.taxable.currency), "tax": Money.of(-entry.tax.amount, entry.tax.currency)})
