"""Every query of the catalogue and calendar projections."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import ARRAY, Table, Text, any_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import tenant_column, tenant_owned
from usage_ingest.catalogue.models import CatalogueProduct, ClosedPeriod

PRODUCT: Table = tenant_owned(CatalogueProduct, "seller_id")
CLOSED: Table = tenant_owned(ClosedPeriod, "seller_id")


async def upsert(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Store a product at its revision; an older or equal revision (redelivered, replayed, out of
    order) changes nothing. Whether the row changed."""
    insert = pg_insert(PRODUCT).values(**row)
    upsert = insert.on_conflict_do_update(
        index_elements=["seller_id", "product_code"],
        set_={k: insert.excluded[k] for k in row if k not in ("seller_id", "product_code")},
        where=PRODUCT.c.revision < insert.excluded.revision,
    ).returning(PRODUCT.c.revision)
    return (await session.execute(upsert)).first() is not None


async def visible(session: AsyncSession, tenant: str, codes: Iterable[str]) -> list[Any]:
    """The products of these codes a tenant may order, in one statement (the codes as one array
    parameter): its own, and the distributor's (`wholesale`), which every partner's catalogue
    falls back to."""
    wanted = sorted(set(codes))
    if not wanted:
        return []
    query = select(PRODUCT.c.seller_id, PRODUCT.c.product_code, PRODUCT.c.allows_credits, PRODUCT.c.wholesale).where(
        PRODUCT.c.product_code == any_(bindparam("codes", wanted, type_=ARRAY(Text))),
        or_(tenant_column(PRODUCT) == tenant, PRODUCT.c.wholesale.is_(True)),
    )
    return list((await session.execute(query)).all())


async def insert_closed(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Store a closed bill run once (a redelivered or replayed one changes nothing); whether it was new."""
    statement = pg_insert(CLOSED).values(**row).on_conflict_do_nothing(index_elements=["bill_run_id"]).returning(CLOSED.c.bill_run_id)
    return (await session.execute(statement)).first() is not None


async def closed_between(session: AsyncSession, tenant: str, first: date, last: date) -> list[Any]:
    """The periods closed for `tenant` that overlap `first`..`last`, in one statement: its own
    (retail) runs and the distributor's (wholesale) runs, which bill every partner."""
    query = select(CLOSED.c.seller_id, CLOSED.c.tier, CLOSED.c.period_start, CLOSED.c.period_end).where(
        or_(tenant_column(CLOSED) == tenant, CLOSED.c.tier == "wholesale"),
        CLOSED.c.period_end >= first,
        CLOSED.c.period_start <= last,
    )
    return list((await session.execute(query)).all())
