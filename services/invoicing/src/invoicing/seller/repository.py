"""Every query on seller settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing.seller.models import SellerSettings

SELLER: Table = SellerSettings.__table__  # type: ignore[attr-defined]


async def get(session: AsyncSession, seller_id: str) -> Any:
    return (await session.execute(select(SELLER).where(SELLER.c.seller_id == seller_id))).first()


async def upsert(session: AsyncSession, row: dict[str, Any]) -> Any:
    insert = pg_insert(SELLER).values(**row)
    upsert = insert.on_conflict_do_update(index_elements=["seller_id"], set_={k: insert.excluded[k] for k in row if k != "seller_id"}).returning(SELLER)
    return (await session.execute(upsert)).one()


async def get_many(session: AsyncSession, seller_ids: list[str]) -> list[Any]:
    if not seller_ids:
        return []
    return list((await session.execute(select(SELLER).where(SELLER.c.seller_id == any_(bindparam("seller_ids", seller_ids, type_=ARRAY(String)))))).all())
