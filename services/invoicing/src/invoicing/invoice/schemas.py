"""Invoices as the API shows them. Money is a decimal string with the currency's minor digits."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from billing_events import Address, DocumentLink
from billing_events.money import money_str, open_amount
from billing_runtime.api import Page

Status = Literal["open", "paid", "void"]


class PartyOut(BaseModel):
    account_id: str
    name: str
    country: str | None
    vat_id: str | None
    email: str | None
    address: Address | None = None
    business: bool | None = None
    registration: str | None = None


class InvoiceSummary(BaseModel):
    """One row of the invoice list (seed 003: description, period, net, tax, total, due date, paid date, status)."""

    id: str
    number: str
    buyer_account_id: str
    buyer_name: str
    description: str
    period_start: date
    period_end: date
    issued_on: date
    due_on: date
    paid_on: date | None
    status: Status
    currency: str
    net_total: str
    tax_total: str
    total: str
    amount_paid: str
    credited_total: str
    open_amount: str

    @classmethod
    def from_row(cls, row: Any) -> InvoiceSummary:
        return cls(**_summary_fields(row))


class InvoicePage(Page[InvoiceSummary]):
    """One page of the seller's invoices, newest number first."""


class InvoiceLineOut(BaseModel):
    line_id: str
    product_code: str
    description: str
    category: str | None
    kind: str
    end_customer_id: str | None
    end_customer_name: str | None
    service_period_start: date
    service_period_end: date
    quantity: str
    unit: str | None
    unit_price: str
    net: str
    tax_rate: str
    tax_category: str
    tax_scheme: str
    tax_country: str | None
    late: bool = Field(
        description="Usage (or a term) of an earlier period that arrived after that period was closed: billed now, "
        "its service_period_start/end are that earlier period's."
    )


class TaxBreakdownOut(BaseModel):
    tax_category: str
    rate: str
    taxable: str
    tax: str
    note: str | None = None


class ProductTotal(BaseModel):
    product_code: str
    description: str
    quantity: str
    net: str


class EndCustomerSection(BaseModel):
    end_customer_id: str
    end_customer_name: str | None
    line_ids: list[str]
    net: str


class CategoryTotal(BaseModel):
    category: str
    net: str


class Sections(BaseModel):
    """The consolidated partner invoice of seed 001, computed from the lines."""

    own_environment: list[str]
    customer_charges_by_product: list[ProductTotal]
    end_customers: list[EndCustomerSection]
    project_work: list[str]
    shipping: list[str]
    product_codes: list[ProductTotal]
    categories: list[CategoryTotal]


class InvoiceDetail(InvoiceSummary):
    tier: str
    flags: list[str]
    seller: PartyOut
    buyer: PartyOut
    tax_breakdown: list[TaxBreakdownOut]
    lines: list[InvoiceLineOut]
    sections: Sections
    documents: list[DocumentLink] = Field(
        default=[],
        description="pdf (Factur-X PDF/A-3), cii_xml (EN 16931 CII) and ubl_xml (UBL 2.1, Peppol BIS Billing 3.0); `shared_url` is null "
        "for invoices issued before shared links (or, for ubl_xml, before its shared link) existed.",
    )

    @classmethod
    def from_rows(cls, row: Any, lines: list[Any], documents: list[DocumentLink] | None = None) -> InvoiceDetail:
        return cls(**_summary_fields(row), **detail_fields(row, lines), documents=documents or [])


class SharedLinks(BaseModel):
    """An invoice's documents with their new shared links (the old ones answer 404 from now on)."""

    documents: list[DocumentLink] = Field(description="pdf, cii_xml and ubl_xml, each with its new `shared_url`.")


class InvoicePreview(BaseModel):
    """The invoice a period would make if it closed now with these lines: no number, nothing stored."""

    invoice_id: str
    already_issued: bool
    buyer_account_id: str
    buyer_name: str
    description: str
    period_start: date
    period_end: date
    issued_on: date
    due_on: date
    currency: str
    net_total: str
    tax_total: str
    total: str
    tier: str
    flags: list[str]
    seller: PartyOut
    buyer: PartyOut
    tax_breakdown: list[TaxBreakdownOut]
    lines: list[InvoiceLineOut]
    sections: Sections


def detail_fields(row: Any, lines: list[Any]) -> dict[str, Any]:
    """The detail of an invoice (or a preview) from its row-like header and line rows."""
    currency = row.currency
    line_outs = [
        InvoiceLineOut(
            line_id=li.line_id,
            product_code=li.product_code,
            description=li.description,
            category=li.category,
            kind=li.kind,
            end_customer_id=li.end_customer_id,
            end_customer_name=li.end_customer_name,
            service_period_start=li.service_period_start,
            service_period_end=li.service_period_end,
            quantity=_plain(li.quantity),
            unit=li.unit,
            # Unit prices keep their own precision (0.0125 per GB); only amounts are rounded.
            unit_price=_plain(li.unit_price),
            net=money_str(li.net, currency),
            tax_rate=_plain(li.tax_rate),
            tax_category=li.tax_category,
            tax_scheme=li.tax_scheme,
            tax_country=li.tax_country,
            late=li.late,
        )
        for li in lines
    ]
    return {
        "tier": row.tier,
        "flags": list(row.flags),
        "seller": PartyOut.model_validate(row.seller),
        "buyer": PartyOut.model_validate(row.buyer),
        "tax_breakdown": [
            TaxBreakdownOut(tax_category=t["tax_category"], rate=t["rate"], taxable=t["taxable"]["amount"], tax=t["tax"]["amount"], note=t.get("note"))
            for t in row.tax_breakdown
        ],
        "lines": line_outs,
        "sections": sections(lines, currency),
    }


def customer_section_lines(lines: list[Any]) -> dict[str, list[Any]]:
    """The lines of each end customer's section, by end customer id, ordered by the customer's name:
    its services and its project work (time and materials are re-billed to that customer), not
    shipping, which is the partner's own."""
    customers: dict[str, list[Any]] = defaultdict(list)
    for li in lines:
        if li.end_customer_id is not None and li.kind != "shipping":
            customers[li.end_customer_id].append(li)
    return dict(sorted(customers.items(), key=lambda kv: end_customer_name(kv[1]) or kv[0]))


def end_customer_name(section: list[Any]) -> str | None:
    """The end customer's name, from the first line of its section that gives one."""
    return next((li.end_customer_name for li in section if li.end_customer_name), None)


def own_environment_lines(lines: list[Any]) -> list[Any]:
    """The partner's own lines: without an end customer (its own project work included), not shipping."""
    return [li for li in lines if li.end_customer_id is None and li.kind != "shipping"]


def product_totals(lines: list[Any]) -> list[tuple[str, str, Decimal, Decimal]]:
    """(product code, description, Σ quantity, Σ net) of each product code of `lines`, by code;
    the description is that of the code's first line."""
    quantity: dict[str, Decimal] = defaultdict(Decimal)
    net: dict[str, Decimal] = defaultdict(Decimal)
    names: dict[str, str] = {}
    for li in lines:
        quantity[li.product_code] += li.quantity
        net[li.product_code] += li.net
        names.setdefault(li.product_code, li.description)
    return [(code, names[code], quantity[code], net[code]) for code in sorted(quantity)]


def category_totals(lines: list[Any], unnamed: str) -> list[tuple[str, Decimal]]:
    """(category, Σ net) of each category of `lines`, by category; lines without one count under
    `unnamed` (the API's "uncategorised", the PDF's "Uncategorised")."""
    nets: dict[str, Decimal] = defaultdict(Decimal)
    for li in lines:
        nets[li.category or unnamed] += li.net
    return sorted(nets.items())


def sections(lines: list[Any], currency: str) -> Sections:
    """Seed 001's consolidated invoice: the partner's own environment (lines without an end
    customer, its own project work included), customer charges summed by product, one section per
    end customer (with that customer's project work), project work and shipping as lists, a summary
    of product codes and totals per category. The PDF lays out the same figures
    (`documents/consolidated.py`)."""

    def by_product(selected: list[Any]) -> list[ProductTotal]:
        return [
            ProductTotal(product_code=code, description=name, quantity=_plain(quantity), net=money_str(net, currency))
            for code, name, quantity, net in product_totals(selected)
        ]

    customers = customer_section_lines(lines)
    customer_lines = [li for cl in customers.values() for li in cl]
    return Sections(
        own_environment=[li.line_id for li in own_environment_lines(lines)],
        customer_charges_by_product=by_product(customer_lines),
        end_customers=[
            EndCustomerSection(
                end_customer_id=cid,
                end_customer_name=end_customer_name(cl),
                line_ids=[li.line_id for li in cl],
                net=money_str(sum((li.net for li in cl), Decimal(0)), currency),
            )
            for cid, cl in customers.items()
        ],
        project_work=[li.line_id for li in lines if li.kind == "project_work"],
        shipping=[li.line_id for li in lines if li.kind == "shipping"],
        product_codes=by_product(lines),
        categories=[CategoryTotal(category=c, net=money_str(v, currency)) for c, v in category_totals(lines, "uncategorised")],
    )


def _plain(value: Decimal) -> str:
    return format(value, "f")


def _summary_fields(row: Any) -> dict[str, Any]:
    currency = row.currency
    open_now = max(open_amount(row.total, row.amount_paid, row.credited_total), Decimal(0)) if row.status == "open" else Decimal(0)
    return {
        "id": row.invoice_id,
        "number": row.number,
        "buyer_account_id": row.buyer_account_id,
        "buyer_name": row.buyer["name"],
        "description": row.description,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "issued_on": row.issued_on,
        "due_on": row.due_on,
        "paid_on": row.paid_on,
        "status": row.status,
        "currency": currency,
        "net_total": money_str(row.net_total, currency),
        "tax_total": money_str(row.tax_total, currency),
        "total": money_str(row.total, currency),
        "amount_paid": money_str(row.amount_paid, currency),
        "credited_total": money_str(row.credited_total, currency),
        "open_amount": money_str(open_now, currency),
    }
