"""The invoice rules: issue one invoice per closed period (BILLING-RULES §6, §7), settle it from payments.

Consumers call these inside the inbox transaction, so state, number and emitted events commit
together with the record that the event was applied. Invalid data raises; the inbox retries and
then dead-letters it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    DocumentLink,
    InvoiceIssued,
    InvoiceSettled,
    Money,
    Party,
    PaymentRefunded,
    PaymentSucceeded,
    PeriodClosed,
    RatedLine,
    TaxBreakdown,
    derived_event_id,
)
from billing_events import InvoiceLine as InvoiceLineEvent
from billing_events.money import UnknownCurrency, fits_minor_units, minor_units, money_str, open_amount, round_half_up
from billing_runtime.service import ServiceRuntime
from invoicing.buyer.service import BuyerInfo, buyer_info
from invoicing.comparison.service import create_report
from invoicing.documents.shares import share, shared_url
from invoicing.invoice import repository as repo
from invoicing.invoice.schemas import InvoicePreview, detail_fields
from invoicing.numbering.service import format_number, reserve
from invoicing.seller.service import Seller, due_date, find_seller, get_seller
from invoicing.tax.engine import BuyerTax, SellerTax, TaxDecision, TaxError, determine_tax, tax_date
from invoicing.tax.vat_id import check_vat_id

tracer = trace.get_tracer(__name__)

INVOICES_ISSUED = Counter("billing_invoices_issued_total", "Invoices issued", ["currency"])
AMOUNT_INVOICED = Counter("billing_invoiced_amount_total", "Sum of issued invoice totals, in major units", ["currency"])
TAX_INVOICED = Counter("billing_invoiced_tax_total", "VAT on issued invoices, in major units", ["currency", "scheme", "country"])
INVOICE_LINES = Histogram("billing_invoice_lines", "Lines per issued invoice", buckets=(1, 2, 5, 10, 20, 50, 100, 500, 1000))
PAYMENTS_APPLIED = Counter("billing_invoice_payments_applied_total", "Payments applied to invoices", ["currency"])
AMOUNT_COLLECTED = Counter("billing_collected_amount_total", "Sum of payments applied to invoices, in major units", ["currency"])
REFUNDS_APPLIED = Counter("billing_invoice_refunds_applied_total", "Refunds applied to invoices", ["currency", "outcome"])
PREVIEWS = Counter("billing_invoice_previews_total", "Invoice previews computed")
INVOICES_SETTLED = Counter("billing_invoices_settled_total", "Invoices paid in full", ["currency"])

# Fixed: invoice ids derive from it, so changing it would re-identify every invoice on replay.
_INVOICE_NAMESPACE = uuid.UUID("0b1d6a52-8f0e-5c7a-b3f4-2d9e6c1a7e40")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


class InvalidPeriodClosed(ValueError):
    """A PeriodClosed that cannot become an invoice (unknown currency, mixed currencies, bad period)."""


class UnknownInvoice(LookupError):
    """A payment for an invoice this service never issued: payments only learn of invoices from
    InvoiceIssued, so this is bad data, not an ordering problem."""


class InvalidPayment(ValueError):
    """A payment that does not fit its invoice (other seller, buyer or currency; not a positive amount)."""


@dataclass(frozen=True)
class DraftLine:
    rated: RatedLine
    net: Decimal
    tax: TaxDecision

    @property
    def tax_category(self) -> str:
        return self.tax.category.value

    @property
    def tax_rate(self) -> Decimal:
        return self.tax.rate


@dataclass(frozen=True)
class Draft:
    """An invoice's lines and figures, before it has a number and dates."""

    currency: str
    lines: list[DraftLine]
    breakdown: list[TaxBreakdown]
    net_total: Decimal
    tax_total: Decimal

    @property
    def total(self) -> Decimal:
        return self.net_total + self.tax_total


@dataclass(frozen=True)
class Composed:
    """Everything an invoice says except its number: what `issue_invoice` stores and `preview` shows."""

    invoice_id: str
    closed: PeriodClosed
    draft: Draft
    seller: Seller
    seller_party: Party
    buyer_party: Party
    issued_on: date
    due_on: date
    description: str
    flags: list[str]


def invoice_id_for(seller_id: str, buyer_account_id: str, period_start: date, period_end: date) -> str:
    """The invoice's id, fixed by what it bills: re-deriving it after a replay gives the same id."""
    return str(uuid.uuid5(_INVOICE_NAMESPACE, f"invoice:{seller_id}:{buyer_account_id}:{period_start}:{period_end}"))


def period_description(start: date, end: date) -> str:
    """ "Services October 2026" for a calendar month; the two dates otherwise."""
    if start.day == 1 and end.month == start.month and end.year == start.year and (end + timedelta(days=1)).day == 1:
        return f"Services {_MONTHS[start.month - 1]} {start.year}"
    return f"Services {start.isoformat()} to {end.isoformat()}"


def tax_breakdown(lines: list[DraftLine], currency: str) -> list[TaxBreakdown]:
    """One entry per (category, rate): taxable = Σ line nets, tax = taxable × rate, rounded half up once (EN 16931 BG-23)."""
    taxable: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    notes: dict[tuple[str, Decimal], str | None] = {}
    for line in lines:
        key = (line.tax_category, line.tax_rate)
        taxable[key] += line.net
        notes.setdefault(key, line.tax.note)
    return [
        TaxBreakdown(
            tax_category=category,
            rate=rate,
            taxable=Money.of(base, currency),
            tax=Money.of(round_half_up(base * rate / 100, currency), currency),
            note=notes[(category, rate)],
        )
        for (category, rate), base in sorted(taxable.items())
    ]


def build_draft(closed: PeriodClosed, seller: SellerTax | None = None, buyer: BuyerTax | None = None) -> Draft:
    """Price and tax a closed period's rated lines: each net is rating's exact amount rounded once to
    the currency's minor unit; VAT per rate on the sum of the nets at that rate (EN 16931)."""
    seller = seller or SellerTax(country=None)
    buyer = buyer or BuyerTax(country=None)
    currency = closed.currency
    try:
        minor_units(currency)
    except UnknownCurrency as exc:
        raise InvalidPeriodClosed(f"unknown_currency: {exc}") from exc
    if closed.period_end < closed.period_start:
        raise InvalidPeriodClosed(f"invalid_period: period ends ({closed.period_end}) before it starts ({closed.period_start})")
    seen: set[str] = set()
    lines: list[DraftLine] = []
    for rated in closed.lines:
        if rated.line_id in seen:
            raise InvalidPeriodClosed(f"duplicate_line: line id {rated.line_id!r} appears twice")
        seen.add(rated.line_id)
        for what, money in (("unit price", rated.unit_price), ("amount", rated.amount)):
            if money.currency != currency:
                raise InvalidPeriodClosed(f"currency_mismatch: line {rated.line_id!r}: {what} in {money.currency}, invoice in {currency}")
        on = tax_date(rated.timing, rated.service_period_start, rated.service_period_end)
        tax = determine_tax(seller, buyer, rated.tax_category, on)
        lines.append(DraftLine(rated=rated, net=round_half_up(rated.amount.amount, currency), tax=tax))
    breakdown = tax_breakdown(lines, currency)
    net_total = sum((line.net for line in lines), Decimal(0))
    tax_total = sum((entry.tax.amount for entry in breakdown), Decimal(0))
    return Draft(currency=currency, lines=lines, breakdown=breakdown, net_total=net_total, tax_total=tax_total)


async def _buyer(session: AsyncSession, closed: PeriodClosed) -> BuyerInfo:
    """The buyer: for a wholesale invoice the partner, from the partner's own seller profile (its
    name, country, VAT number and address as it invoices its customers); otherwise the customer as
    CustomerUpserted announced it. Unknown: named by its account id, country unknown."""
    if closed.tier == "wholesale":
        partner = await find_seller(session, closed.buyer_account_id)
        if partner is not None:
            check = check_vat_id(partner.vat_id, partner.country) if partner.vat_id else None
            party = partner.party().model_copy(update={"account_id": closed.buyer_account_id})
            flags = ("buyer_vat_id_invalid",) if check is not None and not check.valid else ()
            return BuyerInfo(party, BuyerTax(country=partner.country, business=True, vat_id_valid=bool(check and check.valid)), flags)
    info = await buyer_info(session, closed.buyer_account_id)
    if info is not None:
        return info
    return BuyerInfo(Party(account_id=closed.buyer_account_id, name=closed.buyer_account_id), BuyerTax(country=None))


async def compose(runtime: ServiceRuntime, session: AsyncSession, closed: PeriodClosed) -> Composed:
    """The invoice a closed period makes, as of today, without a number and without writing anything."""
    seller = await get_seller(runtime, session, closed.seller_id)
    buyer = await _buyer(session, closed)
    draft = build_draft(closed, SellerTax(country=seller.country, vat_id=seller.vat_id), buyer.tax)
    issued_on = runtime.clock.today()
    return Composed(
        invoice_id=invoice_id_for(closed.seller_id, closed.buyer_account_id, closed.period_start, closed.period_end),
        closed=closed,
        draft=draft,
        seller=seller,
        seller_party=seller.party(),
        buyer_party=buyer.party,
        issued_on=issued_on,
        due_on=due_date(issued_on, seller.due_rule),
        description=period_description(closed.period_start, closed.period_end),
        flags=list(buyer.flags),
    )


async def issue_invoice(runtime: ServiceRuntime, session: AsyncSession, closed: PeriodClosed) -> str | None:
    """Issue the invoice of one closed period, numbered and dated, and emit InvoiceIssued.

    Returns the new invoice's id, or None when this seller, buyer and period were invoiced already.
    An invoice whose total is not positive is settled on issue (nothing to collect).
    """
    with tracer.start_as_current_span(
        "issue_invoice", attributes={"billing.seller_id": closed.seller_id, "billing.buyer_account_id": closed.buyer_account_id}
    ) as span:
        # Fast path for a re-run: already issued needs no pricing. The check under the lock below decides.
        if await repo.find_for_period(session, closed.seller_id, closed.buyer_account_id, closed.period_start, closed.period_end):
            span.set_attribute("billing.already_issued", True)
            return None
        try:
            composed = await compose(runtime, session, closed)
        except TaxError as exc:
            raise InvalidPeriodClosed(str(exc)) from exc
        draft = composed.draft
        numbers = await reserve(session, closed.seller_id)
        if await repo.find_for_period(session, closed.seller_id, closed.buyer_account_id, closed.period_start, closed.period_end):
            span.set_attribute("billing.already_issued", True)
            return None

        seq = await numbers.take()
        number = format_number(composed.seller.invoice_prefix, seq)
        invoice_id = composed.invoice_id
        issued_on = composed.issued_on
        settled_on_issue = draft.total <= 0
        span.set_attributes({"billing.invoice_id": invoice_id, "billing.invoice_number": number})

        await repo.insert_invoice(
            session,
            invoice={
                "invoice_id": invoice_id,
                "seller_id": closed.seller_id,
                "buyer_account_id": closed.buyer_account_id,
                "bill_run_id": closed.bill_run_id,
                "seq": seq,
                "number": number,
                "description": composed.description,
                "period_start": closed.period_start,
                "period_end": closed.period_end,
                "issued_on": issued_on,
                "due_on": composed.due_on,
                "paid_on": issued_on if settled_on_issue else None,
                "status": "paid" if settled_on_issue else "open",
                "currency": draft.currency,
                "net_total": draft.net_total,
                "tax_total": draft.tax_total,
                "total": draft.total,
                "amount_paid": Decimal(0),
                "seller": composed.seller_party.model_dump(mode="json"),
                "buyer": composed.buyer_party.model_dump(mode="json"),
                "tax_breakdown": [entry.model_dump(mode="json") for entry in draft.breakdown],
                "issued_at": runtime.clock.now(),
                "tier": closed.tier,
                "flags": composed.flags,
                "credited_total": Decimal(0),
            },
            lines=[_line_row(invoice_id, position, line) for position, line in enumerate(draft.lines, start=1)],
        )
        issued = InvoiceIssued(
            invoice_id=invoice_id,
            number=number,
            seller=composed.seller_party,
            buyer=composed.buyer_party,
            issued_on=issued_on,
            due_on=composed.due_on,
            period_start=closed.period_start,
            period_end=closed.period_end,
            currency=draft.currency,
            lines=[line_event(line, draft.currency) for line in draft.lines],
            tax_breakdown=draft.breakdown,
            net_total=Money.of(draft.net_total, draft.currency),
            tax_total=Money.of(draft.tax_total, draft.currency),
            total=Money.of(draft.total, draft.currency),
            documents=await document_links(runtime, session, closed.seller_id, invoice_id),
            tier=closed.tier,
            flags=composed.flags,
        )
        event_id = derived_event_id("invoice_issued", invoice_id)
        events = [runtime.event(issued, tenant=closed.seller_id, event_id=event_id, subject=invoice_id)]
        if closed.tier == "wholesale":
            # Seed 001: the partner's comparison report is ready with its invoice.
            await create_report(runtime, session, await repo.lock_invoice(session, invoice_id))
        if settled_on_issue:
            nothing_paid = Money.of(0, draft.currency)
            events.append(settled_event(runtime, invoice_id, number, closed.seller_id, closed.buyer_account_id, issued_on, nothing_paid))
        await runtime.outbox.add(session, *events)

        INVOICES_ISSUED.labels(draft.currency).inc()
        AMOUNT_INVOICED.labels(draft.currency).inc(float(draft.total))
        INVOICE_LINES.observe(len(draft.lines))
        for line in draft.lines:
            if line.tax.rate:
                TAX_INVOICED.labels(draft.currency, line.tax.scheme.value, line.tax.country or "").inc(float(line.net * line.tax.rate / 100))
        return invoice_id


async def preview_invoice(runtime: ServiceRuntime, session: AsyncSession, closed: PeriodClosed) -> InvoicePreview:
    """The invoice `closed` would issue today, computed by the same code as `issue_invoice` and
    writing nothing (BILLING-RULES §7 preview)."""
    attributes = {"billing.seller_id": closed.seller_id, "billing.buyer_account_id": closed.buyer_account_id}
    with tracer.start_as_current_span("preview_invoice", attributes=attributes):
        composed = await compose(runtime, session, closed)
        already = await repo.find_for_period(session, closed.seller_id, closed.buyer_account_id, closed.period_start, closed.period_end)
        PREVIEWS.inc()
    draft = composed.draft
    header = SimpleNamespace(
        currency=draft.currency,
        tier=closed.tier,
        flags=composed.flags,
        seller=composed.seller_party.model_dump(mode="json"),
        buyer=composed.buyer_party.model_dump(mode="json"),
        tax_breakdown=[entry.model_dump(mode="json") for entry in draft.breakdown],
    )
    lines = [SimpleNamespace(**line_values(line)) for line in draft.lines]
    return InvoicePreview(
        invoice_id=composed.invoice_id,
        already_issued=already is not None,
        buyer_account_id=closed.buyer_account_id,
        buyer_name=composed.buyer_party.name,
        description=composed.description,
        period_start=closed.period_start,
        period_end=closed.period_end,
        issued_on=composed.issued_on,
        due_on=composed.due_on,
        currency=draft.currency,
        net_total=money_str(draft.net_total, draft.currency),
        tax_total=money_str(draft.tax_total, draft.currency),
        total=money_str(draft.total, draft.currency),
        **detail_fields(header, lines),
    )


DOCUMENT_FORMATS = (("pdf", "pdf"), ("cii_xml", "xml"))  # an invoice's documents: (kind in events and the API, format)


async def document_links(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, invoice_id: str) -> list[DocumentLink]:
    """Where the buyer's tools fetch the documents (rendered on first download): the PDF carries
    the Factur-X EN 16931 XML inside; the XML is also served alone. Each also has its shared link
    (made here, in the issuing transaction), which needs no API key."""
    now = runtime.clock.now()
    return invoice_links(runtime, invoice_id, {fmt: await share(session, seller_id, "invoice", invoice_id, fmt, now) for _, fmt in DOCUMENT_FORMATS})


def invoice_links(runtime: ServiceRuntime, invoice_id: str, tokens: dict[str, str]) -> list[DocumentLink]:
    """The invoice's documents with their shared links by format (none for a format without one)."""
    return [
        DocumentLink(kind=kind, url=f"/v1/invoices/{invoice_id}/{fmt}", shared_url=shared_url(runtime, tokens[fmt]) if fmt in tokens else None)
        for kind, fmt in DOCUMENT_FORMATS
    ]


async def apply_payment(runtime: ServiceRuntime, session: AsyncSession, payment: PaymentSucceeded) -> None:
    """Add a payment to its invoice's amount paid, once per payment id. The payment that brings
    the amount paid to the total marks the invoice paid on its own paid date and emits InvoiceSettled."""
    with tracer.start_as_current_span("apply_payment", attributes={"billing.invoice_id": payment.invoice_id, "billing.payment_id": payment.payment_id}):
        invoice = await repo.lock_invoice(session, payment.invoice_id)
        if invoice is None:
            raise UnknownInvoice(f"payment {payment.payment_id!r} is for invoice {payment.invoice_id!r}, which was never issued")
        _check_payment(payment, invoice)
        recorded = await repo.insert_payment(
            session,
            {
                "payment_id": payment.payment_id,
                "invoice_id": invoice.invoice_id,
                "seller_id": payment.seller_id,
                "amount": payment.amount.amount,
                "currency": payment.amount.currency,
                "method": payment.method,
                "provider": payment.provider,
                "paid_on": payment.paid_on,
                "recorded_at": runtime.clock.now(),
            },
        )
        if not recorded:
            return  # the same payment under another event id: already counted
        amount_paid = invoice.amount_paid + payment.amount.amount
        settles = invoice.status == "open" and open_amount(invoice.total, amount_paid, invoice.credited_total) <= 0
        await repo.record_paid(session, invoice.invoice_id, amount_paid, paid_on=payment.paid_on if settles else None)
        PAYMENTS_APPLIED.labels(invoice.currency).inc()
        AMOUNT_COLLECTED.labels(invoice.currency).inc(float(payment.amount.amount))
        if settles:
            await runtime.outbox.add(
                session,
                settled_event(
                    runtime,
                    invoice.invoice_id,
                    invoice.number,
                    invoice.seller_id,
                    invoice.buyer_account_id,
                    payment.paid_on,
                    Money.of(amount_paid, invoice.currency),
                ),
            )
            INVOICES_SETTLED.labels(invoice.currency).inc()


async def apply_refund(runtime: ServiceRuntime, session: AsyncSession, refund: PaymentRefunded) -> None:
    """Give back part or all of a payment, once per refund id. A refund tied to a credit note returns
    money the credit note already took off the invoice; any other refund reopens a paid invoice for
    what it no longer covers (the buyer owes it again)."""
    with tracer.start_as_current_span("apply_refund", attributes={"billing.invoice_id": refund.invoice_id, "billing.refund_id": refund.refund_id}):
        invoice = await repo.lock_invoice(session, refund.invoice_id)
        if invoice is None:
            raise UnknownInvoice(f"refund {refund.refund_id!r} is for invoice {refund.invoice_id!r}, which was never issued")
        paid = await repo.get_payment(session, refund.payment_id)
        where = f"refund {refund.refund_id!r} of payment {refund.payment_id!r}"
        if paid is None or paid.invoice_id != invoice.invoice_id:
            raise InvalidPayment(f"{where}: no such payment on invoice {invoice.number}")
        amount = refund.amount.amount
        if refund.amount.currency != invoice.currency or amount <= 0 or not fits_minor_units(amount, invoice.currency):
            raise InvalidPayment(f"{where}: {refund.amount.amount} {refund.amount.currency} is not a positive {invoice.currency} amount")
        if await repo.refunded_on_payment(session, refund.payment_id) + refund.amount.amount > paid.amount:
            raise InvalidPayment(f"{where}: more than the {paid.amount} {invoice.currency} paid")
        recorded = await repo.insert_refund(
            session,
            {
                "refund_id": refund.refund_id,
                "payment_id": refund.payment_id,
                "invoice_id": invoice.invoice_id,
                "seller_id": refund.seller_id,
                "amount": refund.amount.amount,
                "currency": refund.amount.currency,
                "refunded_on": refund.refunded_on,
                "credit_note_id": refund.credit_note_id,
                "recorded_at": runtime.clock.now(),
            },
        )
        if not recorded:
            return
        amount_paid = invoice.amount_paid - refund.amount.amount
        reopen = invoice.status == "paid" and refund.credit_note_id is None and open_amount(invoice.total, amount_paid, invoice.credited_total) > 0
        await repo.record_refund(session, invoice.invoice_id, amount_paid, reopen=reopen)
        REFUNDS_APPLIED.labels(invoice.currency, "reopened" if reopen else "kept").inc()


def _check_payment(payment: PaymentSucceeded, invoice: Any) -> None:
    where = f"payment {payment.payment_id!r} for invoice {invoice.number}"
    if payment.seller_id != invoice.seller_id:
        raise InvalidPayment(f"{where}: seller {payment.seller_id!r}, invoice seller {invoice.seller_id!r}")
    if payment.account_id != invoice.buyer_account_id:
        raise InvalidPayment(f"{where}: account {payment.account_id!r}, invoice buyer {invoice.buyer_account_id!r}")
    if payment.amount.currency != invoice.currency:
        raise InvalidPayment(f"{where}: paid in {payment.amount.currency}, invoiced in {invoice.currency}")
    if payment.amount.amount <= 0 or not fits_minor_units(payment.amount.amount, invoice.currency):
        raise InvalidPayment(f"{where}: amount {payment.amount.amount} is not a positive {invoice.currency} amount")


def settled_event(
    runtime: ServiceRuntime,
    invoice_id: str,
    number: str,
    seller_id: str,
    buyer_account_id: str,
    settled_on: date,
    amount_paid: Money,
) -> CloudEvent[Any]:
    settled = InvoiceSettled(
        invoice_id=invoice_id,
        number=number,
        seller_id=seller_id,
        buyer_account_id=buyer_account_id,
        settled_on=settled_on,
        amount_paid=amount_paid,
    )
    # One settlement per invoice, so its id derives from the invoice alone.
    return runtime.event(settled, tenant=seller_id, event_id=derived_event_id("invoice_settled", invoice_id), subject=invoice_id)


def _line_row(invoice_id: str, position: int, line: DraftLine) -> dict[str, object]:
    return {"invoice_id": invoice_id, "position": position, **line_values(line)}


def line_values(line: DraftLine) -> dict[str, object]:
    rated = line.rated
    return {
        "line_id": rated.line_id,
        "product_code": rated.product_code,
        "description": rated.description,
        "category": rated.category,
        "end_customer_id": rated.end_customer_id,
        "service_period_start": rated.service_period_start,
        "service_period_end": rated.service_period_end,
        "quantity": rated.quantity,
        "unit_price": rated.unit_price.amount,
        "amount": rated.amount.amount,
        "net": line.net,
        "tax_rate": line.tax_rate,
        "tax_category": line.tax_category,
        "kind": rated.kind,
        "timing": rated.timing,
        "unit": rated.unit,
        "end_customer_name": rated.end_customer_name,
        "tax_scheme": line.tax.scheme.value,
        "tax_country": line.tax.country,
    }


def line_event(line: DraftLine, currency: str) -> InvoiceLineEvent:
    rated = line.rated
    return InvoiceLineEvent(
        line_id=rated.line_id,
        product_code=rated.product_code,
        description=rated.description,
        service_period_start=rated.service_period_start,
        service_period_end=rated.service_period_end,
        quantity=rated.quantity,
        unit_price=rated.unit_price,
        net=Money.of(line.net, currency),
        tax_rate=line.tax_rate,
        tax_category=line.tax_category,
        end_customer_id=rated.end_customer_id,
        category=rated.category,
        end_customer_name=rated.end_customer_name,
        tax_scheme=line.tax.scheme.value,
        tax_country=line.tax.country,
    )
