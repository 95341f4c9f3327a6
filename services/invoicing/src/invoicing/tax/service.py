"""The One-Stop Shop return (BILLING-RULES §5; arts. 369f–369g of Directive 2006/112/EC): per
quarter, the taxable amounts and VAT of B2C supplies taxed in other member states, by country and rate."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events.money import round_half_up
from invoicing.tax import repository as repo

tracer = trace.get_tracer(__name__)
OSS_REPORTS = Counter("billing_oss_reports_total", "OSS quarterly reports computed")


@dataclass(frozen=True)
class OssRow:
    country: str
    rate: Decimal
    currency: str
    taxable: Decimal
    tax: Decimal
    invoices: int


def quarter_bounds(year: int, quarter: int) -> tuple[date, date]:
    """[first day of the quarter, first day of the next)."""
    start = date(year, 3 * (quarter - 1) + 1, 1)
    return start, date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)


async def oss_report(session: AsyncSession, seller_id: str, year: int, quarter: int) -> list[OssRow]:
    """VAT per (country, rate, currency) on the invoices dated in the quarter, less the credit notes
    dated in it. The VAT of each document is its own rounded figure (Σ nets × rate, rounded once
    per document), so the report adds up to what was invoiced and credited, cent for cent."""
    start, until = quarter_bounds(year, quarter)
    with tracer.start_as_current_span("oss_report", attributes={"billing.seller_id": seller_id, "billing.quarter": f"{year}-Q{quarter}"}):
        taxable: dict[tuple[str, Decimal, str], Decimal] = defaultdict(Decimal)
        tax: dict[tuple[str, Decimal, str], Decimal] = defaultdict(Decimal)
        invoices: dict[tuple[str, Decimal, str], set[str]] = defaultdict(set)
        for row in await repo.oss_bases(session, seller_id, start, until):
            key = (row.tax_country, row.tax_rate.normalize(), row.currency)
            taxable[key] += row.taxable
            tax[key] += round_half_up(row.taxable * row.tax_rate / 100, row.currency)
            invoices[key].add(row.invoice_id)
        # Credit notes issued in the quarter reduce it (art. 369g(4) corrections aside: same quarter only).
        for row in await repo.oss_credits(session, seller_id, start, until):
            key = (row.tax_country, row.tax_rate.normalize(), row.currency)
            taxable[key] -= row.taxable
            tax[key] -= round_half_up(row.taxable * row.tax_rate / 100, row.currency)
        OSS_REPORTS.inc()
        return [OssRow(*key, taxable=taxable[key], tax=tax[key], invoices=len(invoices[key])) for key in sorted(taxable)]
