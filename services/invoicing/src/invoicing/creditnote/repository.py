"""Every query on credit notes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, select_scoped, tenant_owned
from invoicing.creditnote.models import CreditNote, CreditNoteLine

CREDIT_NOTE: Table = tenant_owned(CreditNote, "seller_id")
LINE: Table = CreditNoteLine.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it


async def find_by_key(session: AsyncSession, seller_id: str, idempotency_key: str) -> Any:
    query = select_scoped(CREDIT_NOTE, seller_id).where(CREDIT_NOTE.c.idempotency_key == idempotency_key)
    return (await session.execute(query)).first()


async def get(session: AsyncSession, seller_id: str, credit_note_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's credit note; with `buyer_account_id` (a key restricted to one account), only if it is that buyer's."""
    query = select_scoped(CREDIT_NOTE, seller_id).where(CREDIT_NOTE.c.credit_note_id == credit_note_id)
    return (await session.execute(of_account(query, CREDIT_NOTE.c.buyer_account_id, buyer_account_id))).first()


async def get_lines(session: AsyncSession, credit_note_id: str) -> list[Any]:
    # Lines have no tenant column: they are read by the id of a credit note the caller read scoped.
    return list((await session.execute(select(LINE).where(LINE.c.credit_note_id == credit_note_id).order_by(LINE.c.position))).all())


async def for_invoice(session: AsyncSession, seller_id: str, invoice_id: str) -> list[Any]:
    return list((await session.execute(select_scoped(CREDIT_NOTE, seller_id).where(CREDIT_NOTE.c.invoice_id == invoice_id).order_by(CREDIT_NOTE.c.seq))).all())


async def credited_per_line(session: AsyncSession, seller_id: str, invoice_id: str) -> dict[str, Decimal]:
    """Σ credited net per invoice line id."""
    query = (
        scoped(select(LINE.c.line_id, func.sum(LINE.c.net)).join(CREDIT_NOTE, CREDIT_NOTE.c.credit_note_id == LINE.c.credit_note_id), CREDIT_NOTE, seller_id)
        .where(CREDIT_NOTE.c.invoice_id == invoice_id)
        .group_by(LINE.c.line_id)
    )
    return {line_id: total for line_id, total in (await session.execute(query)).all()}


async def insert_credit_note(session: AsyncSession, *, credit_note: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    await session.execute(insert(CREDIT_NOTE).values(**credit_note))
    await session.execute(insert(LINE), lines)
