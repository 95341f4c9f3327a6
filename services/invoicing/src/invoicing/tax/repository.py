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
    query = (
        scoped(select(INVOICE.c.invoice_id, INVOICE.c.currency, LINE.c.tax_country, LINE.c.tax_rate, func.sum(LINE.c.net).label("taxable")), INVOICE, seller_id)
        .join(LINE, LINE.c.invoice_id == INVOICE.c.invoice_id)
        .where(
            INVOICE.c.issued_on >= issued_from,
            INVOICE.c.issued_on < issued_until,
            LINE.c.tax_scheme == "oss",
        )
        .group_by(INVOICE.c.invoice_id, INVOICE.c.currency, LINE.c.tax_country, LINE.c.tax_rate)
    )
    return list((await session.execute(query)).all())


async def oss_credits(session: AsyncSession, seller_id: str, issued_from: date, issued_until: date) -> list[Any]:
    """Σ credited nets per (credit note, currency, country, rate) of OSS lines credited in [from, until)."""
    query = (
        scoped(select(CREDIT_NOTE.c.credit_note_id, CREDIT_NOTE.c.currency, CREDIT_LINE.c.tax_country, CREDIT_LINE.c.tax_rate), CREDIT_NOTE, seller_id)
        .add_columns(func.sum(CREDIT_LINE.c.net).label("taxable"))
        .join(CREDIT_LINE, CREDIT_LINE.c.credit_note_id == CREDIT_NOTE.c.credit_note_id)
        .where(
            CREDIT_NOTE.c.issued_on >= issued_from,
            CREDIT_NOTE.c.issued_on < issued_until,
            CREDIT_LINE.c.tax_scheme == "oss",
        )
        .group_by(CREDIT_NOTE.c.credit_note_id, CREDIT_NOTE.c.currency, CREDIT_LINE.c.tax_country, CREDIT_LINE.c.tax_rate)
    )
    return list((await session.execute(query)).all())
