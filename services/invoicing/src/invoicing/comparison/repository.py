"""Every query on comparison reports."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Table, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, select_scoped, tenant_owned
from invoicing.comparison.models import ComparisonReport
from invoicing.db import period_starting
from invoicing.invoice.models import Invoice

REPORT: Table = tenant_owned(ComparisonReport, "seller_id")
INVOICE: Table = tenant_owned(Invoice, "seller_id")


async def previous_invoice(session: AsyncSession, seller_id: str, buyer_account_id: str, before: date) -> Any:
    """The buyer's latest invoice from this seller for a period that started before `before`."""
    query = (
        select_scoped(INVOICE, seller_id)
        .where(INVOICE.c.buyer_account_id == buyer_account_id, INVOICE.c.period_start < before)
        .order_by(INVOICE.c.period_start.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def insert_report(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(insert(REPORT).values(**row))


async def update_report(session: AsyncSession, seller_id: str, report_id: str, values: dict[str, Any]) -> None:
    await session.execute(scoped(update(REPORT).where(REPORT.c.report_id == report_id), REPORT, seller_id).values(**values))


def _with_numbers(query: Any) -> Any:
    """The report's row with the numbers of the two invoices it compares (`invoice_number`,
    `previous_invoice_number`): the spreadsheet and the JSON name invoices as people know them."""
    this, previous = INVOICE.alias("this_invoice"), INVOICE.alias("previous_invoice")
    return (
        query.add_columns(this.c.number.label("invoice_number"), previous.c.number.label("previous_invoice_number"))
        .outerjoin(this, this.c.invoice_id == REPORT.c.invoice_id)
        .outerjoin(previous, previous.c.invoice_id == REPORT.c.previous_invoice_id)
    )


async def get(session: AsyncSession, seller_id: str, report_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's report; with `buyer_account_id` (a key restricted to that account), only if it is about that buyer."""
    query = of_account(select_scoped(REPORT, seller_id).where(REPORT.c.report_id == report_id), REPORT.c.buyer_account_id, buyer_account_id)
    return (await session.execute(_with_numbers(query))).first()


async def list_reports(
    session: AsyncSession, seller_id: str, *, buyer_account_id: str | None, period_from: date | None, period_until: date | None
) -> list[Any]:
    query = _with_numbers(select_scoped(REPORT, seller_id)).order_by(REPORT.c.period_start.desc(), REPORT.c.buyer_account_id)
    query = period_starting(of_account(query, REPORT.c.buyer_account_id, buyer_account_id), REPORT, period_from, period_until)
    return list((await session.execute(query.limit(500))).all())
