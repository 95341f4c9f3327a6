"""The invoice rules: issue one invoice per closed period (BILLING-RULES §6, §7), settle it from payments.

Consumers call these inside the inbox transaction, so state, number and emitted events commit
together with the record that the event was applied. Invalid data raises; the inbox retries and
then dead-letters it.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cached_property
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
from billing_runtime.api import DISTRIBUTOR
from billing_runtime.collector import collector_paused
from billing_runtime.errors import NotFound, Unprocessable
from billing_runtime.service import ServiceRuntime
from invoicing.buyer.service import BuyerInfo, buyer_info, buyer_infos
from invoicing.comparison.service import create_report
from invoicing.config import Settings
from invoicing.documents.shares import share_many, shared_url
from invoicing.invoice import repository as repo
from invoicing.invoice.schemas import InvoicePreview, detail_fields
from invoicing.numbering.service import BatchReservation, format_number, reserve_batch
from invoicing.seller.service import Seller, default_seller, due_date, find_seller, find_sellers, get_seller
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
INVOICE_BATCH_PERIODS = Histogram("billing_invoice_batch_periods", "Closed periods per issuing batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
INVOICE_BATCH_SECONDS = Histogram(
    "billing_invoice_batch_seconds", "Time to issue one batch of closed periods", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
)
BATCH_GC_PAUSED_SECONDS = Counter("billing_invoice_batch_gc_paused_seconds", "Time issuing batches paused the cyclic garbage collector")
PERIODS_ALREADY_INVOICED = Counter("billing_periods_already_invoiced_total", "Closed periods whose invoice was issued already: nothing written")
PERIODS_REJECTED = Counter("billing_periods_rejected_total", "Closed periods that cannot be invoiced, by code", ["code"])
INVOICES_SETTLED = Counter("billing_invoices_settled_total", "Invoices paid in full", ["currency"])

# Fixed: invoice ids derive from it, so changing it would re-identify every invoice on replay.
_INVOICE_NAMESPACE = uuid.UUID("0b1d6a52-8f0e-5c7a-b3f4-2d9e6c1a7e40")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


class BuyerNotFound(NotFound):
    code = "buyer_not_found"


class InvalidPeriodClosed(Unprocessable, ValueError):
    """A PeriodClosed that cannot become an invoice; raised with its code: `unknown_currency`,
    `currency_mismatch`, `duplicate_line`, `invalid_period`."""

    code = "invalid_period_closed"


class PeriodClosedRejected(InvalidPeriodClosed):
    """A PeriodClosed of a batch that cannot be invoiced (its own data is at fault: currency,
    period, a buyer without a country, a tax category). Raised before the batch writes anything,
    for the first such period; `index` is its place in the batch, `code` its cause's stable code, and
    `rejected` maps the index of every period of the batch that cannot be invoiced to its error, so
    all of them can be dead-lettered at once and the rest of the batch applied again without them.
    The consumer sets `event_id` and `errors` (the same by event id)."""

    def __init__(
        self, index: int, closed: PeriodClosed, cause: InvalidPeriodClosed | TaxError, rejected: Mapping[int, InvalidPeriodClosed | TaxError] | None = None
    ) -> None:
        super().__init__(cause.message, code=cause.code)
        self.index = index
        self.closed = closed
        self.rejected: dict[int, InvalidPeriodClosed | TaxError] = dict(rejected) if rejected is not None else {index: cause}
        self.event_id: str | None = None
        self.errors: dict[str, InvalidPeriodClosed | TaxError] = {}


class UnknownInvoice(Unprocessable, LookupError):
    """A payment for an invoice this service never issued: payments only learn of invoices from
    InvoiceIssued, so this is bad data, not an ordering problem."""

    code = "unknown_invoice"


class InvalidPayment(Unprocessable, ValueError):
    """A payment that does not fit its invoice (other seller, buyer or currency; not a positive amount)."""

    code = "invalid_payment"


@dataclass(frozen=True)
class DraftLine:
    rated: RatedLine
    net: Decimal
    tax: TaxDecision

    # Read once per line by the row, the event and the breakdown: an enum's `.value` is not free.
    @cached_property
    def tax_category(self) -> str:
        return self.tax.category.value

    @cached_property
    def tax_scheme(self) -> str:
        return self.tax.scheme.value

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
    return breakdown_of(taxable, notes, currency)


def breakdown_of(taxable: Mapping[tuple[str, Decimal], Decimal], notes: Mapping[tuple[str, Decimal], str | None], currency: str) -> list[TaxBreakdown]:
    """One entry per (category, rate) of `taxable` (its Σ nets), in that order: tax = taxable × rate,
    rounded half up once (EN 16931 BG-23), with the legal mention `notes` holds for it."""
    return [
        TaxBreakdown(
            tax_category=category,
            rate=rate,
            taxable=Money.of(base, currency),
            tax=Money.of(round_half_up(base * rate / 100, currency), currency),
            note=notes.get((category, rate)),
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
        raise InvalidPeriodClosed(str(exc), code="unknown_currency") from exc
    if closed.period_end < closed.period_start:
        raise InvalidPeriodClosed(f"period ends ({closed.period_end}) before it starts ({closed.period_start})", code="invalid_period")
    seen: set[str] = set()
    lines: list[DraftLine] = []
    for rated in closed.lines:
        if rated.line_id in seen:
            raise InvalidPeriodClosed(f"line id {rated.line_id!r} appears twice", code="duplicate_line")
        seen.add(rated.line_id)
        for what, money in (("unit price", rated.unit_price), ("amount", rated.amount)):
            if money.currency != currency:
                raise InvalidPeriodClosed(f"line {rated.line_id!r}: {what} in {money.currency}, invoice in {currency}", code="currency_mismatch")
        on = tax_date(rated.timing, rated.service_period_start, rated.service_period_end)
        tax = determine_tax(seller, buyer, rated.tax_category, on)
        lines.append(DraftLine(rated=rated, net=round_half_up(rated.amount.amount, currency), tax=tax))
    breakdown = tax_breakdown(lines, currency)
    net_total = sum((line.net for line in lines), Decimal(0))
    tax_total = sum((entry.tax.amount for entry in breakdown), Decimal(0))
    return Draft(currency=currency, lines=lines, breakdown=breakdown, net_total=net_total, tax_total=tax_total)


def buyer_for(closed: PeriodClosed, partner: Seller | None, known: BuyerInfo | None) -> BuyerInfo:
    """The buyer: for a wholesale invoice the partner, from the partner's own seller profile (its
    name, country, VAT number and address as it invoices its customers); otherwise the customer as
    CustomerUpserted announced it (`known`). Unknown: named by its account id, country unknown."""
    if closed.tier == "wholesale" and partner is not None:
        check = check_vat_id(partner.vat_id, partner.country) if partner.vat_id else None
        party = partner.party().model_copy(update={"account_id": closed.buyer_account_id})
        flags = ("buyer_vat_id_invalid",) if check is not None and not check.valid else ()
        return BuyerInfo(party, BuyerTax(country=partner.country, business=True, vat_id_valid=bool(check and check.valid)), flags)
    if known is not None:
        return known
    return BuyerInfo(Party(account_id=closed.buyer_account_id, name=closed.buyer_account_id), BuyerTax(country=None))


def compose_with(closed: PeriodClosed, seller: Seller, buyer: BuyerInfo, issued_on: date) -> Composed:
    """The invoice a closed period makes for this seller and buyer, dated `issued_on`: pure, so the
    preview, one issue and a batch of issues all compute it the same way. Raises InvalidPeriodClosed
    or TaxError when it cannot be made."""
    draft = build_draft(closed, SellerTax(country=seller.country, vat_id=seller.vat_id), buyer.tax)
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


async def compose(runtime: ServiceRuntime[Settings], session: AsyncSession, closed: PeriodClosed) -> Composed:
    """The invoice a closed period would make for the caller (`closed.seller_id`, the tenant of the
    request), as of today, without a number and without writing anything. The buyer must be the
    seller's: its own customer, or for the distributor's wholesale tier a partner's seller profile;
    anything else (another tenant's account, or one never announced) is BuyerNotFound."""
    seller = await get_seller(runtime, session, closed.seller_id)
    distributor = runtime.settings.distributor_id if isinstance(runtime.settings, Settings) else DISTRIBUTOR
    # Only the distributor bills partners: nobody else may read a partner's seller profile.
    wholesale = closed.tier == "wholesale" and closed.seller_id == distributor
    partner = await find_seller(session, closed.buyer_account_id) if wholesale else None
    known = await buyer_info(session, closed.seller_id, closed.buyer_account_id) if partner is None else None
    if partner is None and known is None:
        raise BuyerNotFound(f"no buyer {closed.buyer_account_id!r}", field="buyer_account_id")
    return compose_with(closed, seller, buyer_for(closed, partner, known), runtime.clock.today())


async def issue_invoice(runtime: ServiceRuntime[Settings], session: AsyncSession, closed: PeriodClosed) -> str | None:
    """Issue the invoice of one closed period, numbered and dated, and emit InvoiceIssued.

    Returns the new invoice's id, or None when this seller, buyer and period were invoiced already.
    A batch of one: `issue_invoices` does the work.
    """
    return (await issue_invoices(runtime, session, [closed]))[0]


async def issue_invoices(runtime: ServiceRuntime[Settings], session: AsyncSession, periods: Sequence[PeriodClosed]) -> list[str | None]:
    """Issue the invoices of a batch of closed periods in the caller's transaction, set-based: each
    numbered (gapless per seller), dated and stored, with its InvoiceIssued (and, wholesale, its
    comparison report), emitted. Returns, for each period in order, the new invoice's id, or None
    when that seller, buyer and period were invoiced already (before, or earlier in this batch).
    An invoice whose total is not positive is settled on issue (nothing to collect).

    About a dozen statements for the whole batch, whatever its size: which invoices exist (once
    before pricing, once more under the counter locks), sellers, buyers, the counters of every
    seller (locked in one statement, written back in one), the invoices and their lines (COPY),
    their shared links, the outbox. Everything is priced and taxed before anything is written: a
    period that cannot be invoiced raises PeriodClosedRejected naming it, and nothing of the batch
    is written, so the consumer can dead-letter it alone and issue the others.
    """
    # A batch's drafts, lines, taxes, events and rows are freed by their reference counts; with the
    # collector running, collections walked them again and again (15% of a batch's CPU).
    with tracer.start_as_current_span("issue_invoices", attributes={"billing.batch_size": len(periods)}) as span, collector_paused(BATCH_GC_PAUSED_SECONDS):
        started = time.perf_counter()
        result: list[str | None] = [None] * len(periods)
        ids = [invoice_id_for(c.seller_id, c.buyer_account_id, c.period_start, c.period_end) for c in periods]
        first: dict[str, int] = {}
        for index, invoice_id in enumerate(ids):
            first.setdefault(invoice_id, index)  # the same period twice in a batch: the first one issues
        todo = list(first.values())
        # Fast path for a re-run: already issued needs no pricing. The check under the locks below decides.
        issued = await repo.issued_among(session, [periods[i].seller_id for i in todo], [ids[i] for i in todo])
        todo = [i for i in todo if ids[i] not in issued]
        if todo:
            composed = await _compose_batch(runtime, session, periods, todo)
            numbers = await reserve_batch(session, [periods[i].seller_id for i in todo])
            issued |= await repo.issued_among(session, [periods[i].seller_id for i in todo], [ids[i] for i in todo])
            todo = [i for i in todo if ids[i] not in issued]
            await _store(runtime, session, [composed[i] for i in todo], numbers)
            for i in todo:
                result[i] = ids[i]
        already = len(periods) - len(todo)
        span.set_attributes({"billing.invoices_issued": len(todo), "billing.already_issued": already})
        INVOICE_BATCH_PERIODS.observe(len(periods))
        INVOICE_BATCH_SECONDS.observe(time.perf_counter() - started)
        if already:
            PERIODS_ALREADY_INVOICED.inc(already)
        return result


async def _compose_batch(runtime: ServiceRuntime[Settings], session: AsyncSession, periods: Sequence[PeriodClosed], todo: list[int]) -> dict[int, Composed]:
    """Price and tax the periods at `todo` (two queries: sellers and partners, buyers)."""
    wholesale = [periods[i].buyer_account_id for i in todo if periods[i].tier == "wholesale"]
    profiles = await find_sellers(session, [periods[i].seller_id for i in todo] + wholesale)
    partners = {account: profiles[account] for account in wholesale if account in profiles}
    # A wholesale buyer with a seller profile is that profile; every other buyer is looked up.
    looked_up = [(c.seller_id, c.buyer_account_id) for c in (periods[i] for i in todo) if not (c.tier == "wholesale" and c.buyer_account_id in partners)]
    buyers = await buyer_infos(session, looked_up)
    today = runtime.clock.today()
    composed: dict[int, Composed] = {}
    rejected: dict[int, InvalidPeriodClosed | TaxError] = {}
    for i in todo:
        closed = periods[i]
        seller = profiles.get(closed.seller_id) or default_seller(runtime, closed.seller_id)
        partner = partners.get(closed.buyer_account_id) if closed.tier == "wholesale" else None
        try:
            composed[i] = compose_with(closed, seller, buyer_for(closed, partner, buyers.get((closed.seller_id, closed.buyer_account_id))), today)
        except (InvalidPeriodClosed, TaxError) as exc:
            PERIODS_REJECTED.labels(exc.code).inc()
            rejected[i] = exc
    if rejected:
        first = min(rejected)
        raise PeriodClosedRejected(first, periods[first], rejected[first], rejected) from rejected[first]
    return composed


async def _store(runtime: ServiceRuntime[Settings], session: AsyncSession, batch: list[Composed], numbers: BatchReservation) -> None:
    """Number, store and announce invoices known to be new (checked under their sellers' counter locks)."""
    if not batch:
        return
    now = runtime.clock.now()
    tokens = await share_many(session, "invoice", [(c.closed.seller_id, c.invoice_id) for c in batch], SHARED_FORMATS, now)
    invoices: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    events: list[CloudEvent[Any]] = []
    wholesale: list[tuple[str, str]] = []
    taxed: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    invoiced: dict[str, list[Decimal]] = defaultdict(list)
    for composed in batch:
        closed, draft, invoice_id = composed.closed, composed.draft, composed.invoice_id
        seq = numbers.take(closed.seller_id)
        number = format_number(composed.seller.invoice_prefix, seq)
        issued_on = composed.issued_on
        settled_on_issue = draft.total <= 0
        invoices.append(
            {
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
                "issued_at": now,
                "tier": closed.tier,
                "flags": composed.flags,
                "credited_total": Decimal(0),
                "voided_on": None,
            }
        )
        lines.extend(_line_row(invoice_id, position, line) for position, line in enumerate(draft.lines, start=1))
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
            documents=invoice_links(runtime, invoice_id, {fmt: tokens[(invoice_id, fmt)] for fmt in SHARED_FORMATS}),
            tier=closed.tier,
            flags=composed.flags,
        )
        events.append(runtime.event(issued, tenant=closed.seller_id, event_id=derived_event_id("invoice_issued", invoice_id), subject=invoice_id))
        if settled_on_issue:
            nothing_paid = Money.of(0, draft.currency)
            events.append(settled_event(runtime, invoice_id, number, closed.seller_id, closed.buyer_account_id, issued_on, nothing_paid))
        if closed.tier == "wholesale":
            wholesale.append((closed.seller_id, invoice_id))
        invoiced[draft.currency].append(draft.total)
        for line in draft.lines:
            if line.tax.rate:
                taxed[(draft.currency, line.tax_scheme, line.tax.country or "")] += line.net * line.tax.rate / 100
    await numbers.write()
    await repo.copy_invoices(session, invoices, lines)
    for seller_id, invoice_id in wholesale:
        # Seed 001: the partner's comparison report is ready with its invoice.
        await create_report(runtime, session, await repo.lock_invoice(session, seller_id, invoice_id))
    await runtime.outbox.add(session, *events)

    for currency, totals in invoiced.items():
        INVOICES_ISSUED.labels(currency).inc(len(totals))
        AMOUNT_INVOICED.labels(currency).inc(float(sum(totals, Decimal(0))))
    for composed in batch:
        INVOICE_LINES.observe(len(composed.draft.lines))
    for (currency, scheme, country), amount in taxed.items():
        TAX_INVOICED.labels(currency, scheme, country).inc(float(amount))


async def preview_invoice(runtime: ServiceRuntime[Settings], session: AsyncSession, closed: PeriodClosed) -> InvoicePreview:
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


async def existing_invoice(session: AsyncSession, seller_id: str, invoice_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's invoice (with `buyer_account_id`: only if it is that buyer's), else 404
    `invoice_not_found`: another seller's invoice is equally not found, its existence not ours to reveal."""
    row = await repo.get_invoice(session, seller_id, invoice_id, buyer_account_id=buyer_account_id)
    if row is None:
        raise NotFound(f"no invoice {invoice_id!r}", code="invoice_not_found")
    return row


# An invoice's documents: (kind in events and the API, stored format, path under the invoice).
DOCUMENT_FORMATS = (("pdf", "pdf", "pdf"), ("cii_xml", "xml", "xml"), ("ubl_xml", "ubl", "xml?syntax=ubl"))
SHARED_FORMATS = tuple(fmt for _, fmt, _ in DOCUMENT_FORMATS)


def invoice_links(runtime: ServiceRuntime[Settings], invoice_id: str, tokens: dict[str, str]) -> list[DocumentLink]:
    """The invoice's documents with their shared links by format (none for a format without one:
    invoices issued before shared links, or before the UBL's, existed)."""
    return [
        DocumentLink(kind=kind, url=f"/v1/invoices/{invoice_id}/{path}", shared_url=shared_url(runtime, tokens[fmt]) if fmt in tokens else None)
        for kind, fmt, path in DOCUMENT_FORMATS
    ]


async def apply_payment(runtime: ServiceRuntime[Settings], session: AsyncSession, payment: PaymentSucceeded) -> None:
    """Add a payment to its invoice's amount paid, once per payment id. The payment that brings
    the amount paid to the total marks the invoice paid on its own paid date and emits InvoiceSettled."""
    with tracer.start_as_current_span("apply_payment", attributes={"billing.invoice_id": payment.invoice_id, "billing.payment_id": payment.payment_id}):
        invoice = await repo.lock_invoice(session, payment.seller_id, payment.invoice_id)
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
        await repo.record_paid(session, invoice.seller_id, invoice.invoice_id, amount_paid, paid_on=payment.paid_on if settles else None)
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


async def apply_refund(runtime: ServiceRuntime[Settings], session: AsyncSession, refund: PaymentRefunded) -> None:
    """Give back part or all of a payment, once per refund id. A refund tied to a credit note returns
    money the credit note already took off the invoice; any other refund reopens a paid invoice for
    what it no longer covers (the buyer owes it again)."""
    with tracer.start_as_current_span("apply_refund", attributes={"billing.invoice_id": refund.invoice_id, "billing.refund_id": refund.refund_id}):
        invoice = await repo.lock_invoice(session, refund.seller_id, refund.invoice_id)
        if invoice is None:
            raise UnknownInvoice(f"refund {refund.refund_id!r} is for invoice {refund.invoice_id!r}, which was never issued")
        if await repo.refund_recorded(session, refund.seller_id, refund.refund_id):
            return  # the same refund again (a replay under another event id): counted already
        paid = await repo.get_payment(session, refund.seller_id, refund.payment_id)
        where = f"refund {refund.refund_id!r} of payment {refund.payment_id!r}"
        if paid is None or paid.invoice_id != invoice.invoice_id:
            raise InvalidPayment(f"{where}: no such payment on invoice {invoice.number}")
        amount = refund.amount.amount
        if refund.amount.currency != invoice.currency or amount <= 0 or not fits_minor_units(amount, invoice.currency):
            raise InvalidPayment(f"{where}: {refund.amount.amount} {refund.amount.currency} is not a positive {invoice.currency} amount")
        if await repo.refunded_on_payment(session, refund.seller_id, refund.payment_id) + refund.amount.amount > paid.amount:
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
        await repo.record_refund(session, invoice.seller_id, invoice.invoice_id, amount_paid, reopen=reopen)
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
    runtime: ServiceRuntime[Settings],
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
        "tax_scheme": line.tax_scheme,
        "tax_country": line.tax.country,
        "late": rated.late,
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
        tax_scheme=line.tax_scheme,
        tax_country=line.tax.country,
        late=rated.late,
    )
