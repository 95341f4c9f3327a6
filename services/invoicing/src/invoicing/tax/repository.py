"""Queries for the tax reports."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, tenant_owned
from invoicing.creditnote.models import CreditNote, CreditNoteLine
from invoicing.invoice.models import Invoice, InvoiceLine

INVOICE: Table = tenant_owned(Invoice, "seller_id")
LINE: Table = InvoiceLine.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
CREDIT_NOTE: Table = tenant_owned(CreditNote, "seller_id")
CREDIT_LINE: Table = CreditNoteLine.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it


async def oss_bases(session: AsyncSession, seller_id: str, issued_from: date, issued_until: date) -> list[Any]:
    """Σ line nets per (invoice, currency, country, rate) of the seller's OSS lines invoiced in [from, until)."""
    return await _oss_nets(session, INVOICE, LINE, "invoice_id", seller_id, issued_from, issued_until)


async def oss_credits(session: AsyncSession, seller_id: str, issued_from: date, issued_until: date) -> list[Any]:
    """Σ credited nets per (credit note, currency, country, rate) of OSS lines credited in [from, until)."""
    return await _oss_nets(session, CREDIT_NOTE, CREDIT_LINE, "credit_note_id", seller_id, issued_from, issued_until)


async def _oss_nets(session: AsyncSession, document: Table, line: Table, key: str, seller_id: str, issued_from: date, issued_until: date) -> list[Any]:
    """Σ nets (`taxable`) per (document `key`, currency, country, rate) of the OSS lines of the seller's documents issued in [from, until)."""
    grouped = (document.c[key], document.c.currency, line.c.tax_country, line.c.tax_rate)
    query = (
        scoped(select(*grouped, func.sum(line.c.net).label("taxable")), document, seller_id)
        .join(line, line.c[key] == document.c[key])
        .where(document.c.issued_on >= issued_from, document.c.issued_on < issued_until, line.c.tax_scheme == "oss")
        .group_by(*grouped)
    )
    return list((await session.execute(query)).all())
