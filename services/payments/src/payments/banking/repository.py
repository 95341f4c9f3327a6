"""Every query on statements and their lines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.banking.models import Statement, StatementLine

STATEMENT: Table = Statement.__table__  # type: ignore[attr-defined]
LINE: Table = StatementLine.__table__  # type: ignore[attr-defined]


async def insert_statement(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(pg_insert(STATEMENT).values(**row).on_conflict_do_nothing().returning(STATEMENT.c.statement_id))
    return result.first() is not None


async def get_statement(session: AsyncSession, tenant: str, statement_id: str) -> Any:
    query = select(STATEMENT).where(STATEMENT.c.tenant == tenant, STATEMENT.c.statement_id == statement_id)
    return (await session.execute(query)).first()


async def insert_line(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(pg_insert(LINE).values(**row))


async def lines_of(session: AsyncSession, tenant: str, statement_id: str) -> list[Any]:
    query = select(LINE).where(LINE.c.tenant == tenant, LINE.c.statement_id == statement_id).order_by(LINE.c.line_no)
    return list((await session.execute(query)).all())


async def unmatched(session: AsyncSession, tenant: str) -> list[Any]:
    query = select(LINE).where(LINE.c.tenant == tenant, LINE.c.status == "unmatched").order_by(LINE.c.booked_on, LINE.c.statement_id, LINE.c.line_no)
    return list((await session.execute(query)).all())
