"""What a document shows, taken from a stored invoice or credit note: one shape for both renderers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from billing_events.money import open_amount


@dataclass(frozen=True)
class DocLine:
    line_id: str
    product_code: str
    description: str
    quantity: Decimal
    unit: str | None
    unit_price: Decimal
    net: Decimal
    tax_category: str
    tax_rate: Decimal
    service_period_start: date
    service_period_end: date
    end_customer_name: str | None = None


@dataclass(frozen=True)
class DocTax:
    category: str
    rate: Decimal
    taxable: Decimal
    tax: Decimal
    note: str | None


if TYPE_CHECKING:  # rendering processes import this module: not the invoice service's
    from invoicing.documents.consolidated import ConsolidatedSections


@dataclass(frozen=True)
class DocContent:
    """Amounts positive; `kind` says whether they are owed (invoice) or given back (credit note)."""

    kind: Literal["invoice", "credit_note"]
    number: str
    issued_on: date
    due_on: date | None
    period_start: date
    period_end: date
    currency: str
    seller: dict[str, Any]
    buyer: dict[str, Any]
    lines: list[DocLine]
    taxes: list[DocTax]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    amount_paid: Decimal = Decimal(0)
    # The partner's consolidated invoice (seed 001), laid out in sections instead of a flat list.
    sections: ConsolidatedSections | None = None
    invoice_number: str | None = None  # the invoice a credit note corrects
    reason: str | None = None
    brand_color: str = "#1f4e79"
    flags: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return "Invoice" if self.kind == "invoice" else "Credit note"

    @property
    def due_amount(self) -> Decimal:
        return open_amount(self.total, self.amount_paid, Decimal(0)) if self.kind == "invoice" else Decimal(0)


def _taxes(breakdown: list[dict[str, Any]], sign: int) -> list[DocTax]:
    return [
        DocTax(t["tax_category"], Decimal(t["rate"]), sign * Decimal(t["taxable"]["amount"]), sign * Decimal(t["tax"]["amount"]), t.get("note"))
        for t in breakdown
    ]


def _line(li: Any) -> DocLine:
    return DocLine(
        line_id=li.line_id,
        product_code=li.product_code,
        description=li.description,
        quantity=li.quantity,
        unit=getattr(li, "unit", None),
        unit_price=li.unit_price,
        net=li.net,
        tax_category=li.tax_category,
        tax_rate=li.tax_rate,
        service_period_start=li.service_period_start,
        service_period_end=li.service_period_end,
        end_customer_name=getattr(li, "end_customer_name", None),
    )


def invoice_content(row: Any, lines: list[Any], brand_color: str | None) -> DocContent:
    return DocContent(
        kind="invoice",
        number=row.number,
        issued_on=row.issued_on,
        due_on=row.due_on,
        period_start=row.period_start,
        period_end=row.period_end,
        currency=row.currency,
        seller=row.seller,
        buyer=row.buyer,
        lines=[_line(li) for li in lines],
        taxes=_taxes(row.tax_breakdown, 1),
        net_total=row.net_total,
        tax_total=row.tax_total,
        total=row.total,
        # The amount due printed is the invoice's total: payments after issue do not change the document.
        brand_color=brand_color or DocContent.brand_color,
        flags=tuple(row.flags),
    )


def credit_note_content(row: Any, lines: list[Any], invoice: Any, brand_color: str | None) -> DocContent:
    return DocContent(
        kind="credit_note",
        number=row.number,
        issued_on=row.issued_on,
        due_on=None,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        currency=row.currency,
        seller=invoice.seller,
        buyer=invoice.buyer,
        lines=[_line(li) for li in lines],
        taxes=_taxes(row.tax_breakdown, 1),
        net_total=row.net_total,
        tax_total=row.tax_total,
        total=row.total,
        invoice_number=invoice.number,
        reason=row.reason,
        brand_color=brand_color or DocContent.brand_color,
    )
