"""Every query on buyers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing.buyer.models import Buyer
from invoicing.tax.models import VatCheck

BUYER: Table = Buyer.__table__  # type: ignore[attr-defined]
VAT_CHECK: Table = VatCheck.__table__  # type: ignore[attr-defined]


async def upsert_if_newer(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Store `row` unless a revision at least as new is stored already; True when it was stored."""
    insert = pg_insert(BUYER).values(**row)
    upsert = insert.on_conflict_do_update(
        index_elements=["account_id"],
        set_={k: insert.excluded[k] for k in row if k != "account_id"},
        where=BUYER.c.revision < insert.excluded.revision,
    ).returning(BUYER.c.account_id)
    return (await session.execute(upsert)).first() is not None


async def get(session: AsyncSession, account_id: str) -> Any:
    return (await session.execute(select(BUYER).where(BUYER.c.account_id == account_id))).first()


async def insert_vat_check(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(pg_insert(VAT_CHECK).values(**row).on_conflict_do_nothing(index_elements=["check_id"]))


async def vat_checks(session: AsyncSession, account_id: str) -> list[Any]:
    return list((await session.execute(select(VAT_CHECK).where(VAT_CHECK.c.account_id == account_id).order_by(VAT_CHECK.c.checked_at))).all())


async def get_many(session: AsyncSession, account_ids: list[str]) -> list[Any]:
    """One query for many buyers: the ids travel as one array parameter."""
    if not account_ids:
        return []
    return list((await session.execute(select(BUYER).where(BUYER.c.account_id == any_(bindparam("account_ids", account_ids, type_=ARRAY(String)))))).all())
