"""Every query on statements and their lines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from payments.banking.models import Statement, StatementLine

STATEMENT: Table = tenant_owned(Statement, "tenant")
LINE: Table = tenant_owned(StatementLine, "tenant")


async def insert_statement(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(pg_insert(STATEMENT).values(**row).on_conflict_do_nothing().returning(STATEMENT.c.statement_id))
    return result.first() is not None


async def get_statement(session: AsyncSession, tenant: str, statement_id: str) -> Any:
    query = select_scoped(STATEMENT, tenant).where(STATEMENT.c.statement_id == statement_id)
    return (await session.execute(query)).first()


async def insert_line(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(pg_insert(LINE).values(**row))


async def lines_of(session: AsyncSession, tenant: str, statement_id: str) -> list[Any]:
    query = select_scoped(LINE, tenant).where(LINE.c.statement_id == statement_id).order_by(LINE.c.line_no)
    return list((await session.execute(query)).all())


async def unmatched(session: AsyncSession, tenant: str) -> list[Any]:
    query = select_scoped(LINE, tenant).where(LINE.c.status == "unmatched").order_by(LINE.c.booked_on, LINE.c.statement_id, LINE.c.line_no)
    return list((await session.execute(query)).all())
