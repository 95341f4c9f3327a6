"""Every query on seller settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from invoicing.seller.models import SellerSettings

SELLER: Table = tenant_owned(SellerSettings, "seller_id")


async def get(session: AsyncSession, seller_id: str) -> Any:
    return (await session.execute(select_scoped(SELLER, seller_id))).first()


async def upsert(session: AsyncSession, row: dict[str, Any]) -> Any:
    insert = pg_insert(SELLER).values(**row)
    upsert = insert.on_conflict_do_update(index_elements=["seller_id"], set_={k: insert.excluded[k] for k in row if k != "seller_id"}).returning(SELLER)
    return (await session.execute(upsert)).one()


async def get_many(session: AsyncSession, seller_ids: list[str]) -> list[Any]:
    if not seller_ids:
        return []
    # Spans tenants on purpose: a bill run's batch names several sellers, and a seller's id is its
    # tenant, so the list of ids is the list of tenants whose settings are read (one query).
    return list((await session.execute(select(SELLER).where(SELLER.c.seller_id == any_(bindparam("seller_ids", seller_ids, type_=ARRAY(String)))))).all())
