"""The partner's consolidated invoice laid out as seed 001's sample (BILLING-RULES §7, worked example A):
the partner's own environment, a summary by product of its customers' charges, one section per end
customer (its project work and time and materials inside it), shipping, the summary of product codes
and the totals per category, each with its subtotal. Computed from the stored lines, so the PDF shows
exactly the figures of the invoice's `sections` in the API (`invoice/schemas.py` `sections`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from invoicing.documents.content import category_words
from invoicing.invoice.schemas import category_totals, customer_section_lines, end_customer_name, own_environment_lines, product_totals


@dataclass(frozen=True)
class SectionLine:
    product_code: str
    description: str
    category: str | None
    kind: str
    quantity: Decimal
    unit: str | None
    unit_price: Decimal
    net: Decimal
    service_period_start: date
    service_period_end: date
    tax_category: str = "S"
    tax_rate: Decimal = Decimal(0)

    @property
    def words(self) -> str:
        """The VAT category in words ("Reverse charge"), for a line not taxed at a rate."""
        return category_words(self.tax_category)


@dataclass(frozen=True)
class ProductSummary:
    product_code: str
    description: str
    quantity: Decimal
    net: Decimal


@dataclass(frozen=True)
class EndCustomerBlock:
    name: str
    lines: tuple[SectionLine, ...]
    subtotal: Decimal

    @property
    def project_work(self) -> tuple[SectionLine, ...]:
        return tuple(li for li in self.lines if li.kind == "project_work")

    @property
    def services(self) -> tuple[SectionLine, ...]:
        return tuple(li for li in self.lines if li.kind != "project_work")


@dataclass(frozen=True)
class ConsolidatedSections:
    own_environment: tuple[SectionLine, ...]
    own_environment_subtotal: Decimal
    customer_products: tuple[ProductSummary, ...]
    customer_subtotal: Decimal
    end_customers: tuple[EndCustomerBlock, ...]
    shipping: tuple[SectionLine, ...]
    shipping_subtotal: Decimal
    product_codes: tuple[ProductSummary, ...]
    categories: tuple[tuple[str, Decimal], ...]
    net_total: Decimal


def is_consolidated(tier: str | None, lines: list[Any]) -> bool:
    """A wholesale invoice (the distributor to a partner), or any invoice whose lines name end customers."""
    return tier == "wholesale" or any(li.end_customer_id for li in lines)


def _line(li: Any) -> SectionLine:
    return SectionLine(
        product_code=li.product_code,
        description=li.description,
        category=li.category,
        kind=li.kind,
        quantity=li.quantity,
        unit=li.unit,
        unit_price=li.unit_price,
        net=li.net,
        service_period_start=li.service_period_start,
        service_period_end=li.service_period_end,
        tax_category=li.tax_category,
        tax_rate=li.tax_rate,
    )


def _by_product(lines: list[Any]) -> tuple[ProductSummary, ...]:
    return tuple(ProductSummary(*totals) for totals in product_totals(lines))


def _sum(lines: list[Any]) -> Decimal:
    return sum((li.net for li in lines), Decimal(0))


def consolidated_sections(lines: list[Any]) -> ConsolidatedSections:
    """The sections of one invoice from its stored lines (`invoicing.invoice.models.InvoiceLine`)."""
    own = own_environment_lines(lines)
    shipping = [li for li in lines if li.kind == "shipping"]
    customers = customer_section_lines(lines)
    customer_lines = [li for group in customers.values() for li in group]
    return ConsolidatedSections(
        own_environment=tuple(_line(li) for li in own),
        own_environment_subtotal=_sum(own),
        customer_products=_by_product(customer_lines),
        customer_subtotal=_sum(customer_lines),
        end_customers=tuple(
            EndCustomerBlock(
                name=end_customer_name(group) or customer_id,
                lines=tuple(_line(li) for li in group),
                subtotal=_sum(group),
            )
            for customer_id, group in customers.items()
        ),
        shipping=tuple(_line(li) for li in shipping),
        shipping_subtotal=_sum(shipping),
        product_codes=_by_product(lines),
        categories=tuple(category_totals(lines, "Uncategorised")),
        net_total=_sum(lines),
    )
