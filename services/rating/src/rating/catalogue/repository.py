"""Every query of the catalogue, the price lists and the seller profiles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from rating.catalogue.models import Price, Product, SellerProfile

PRODUCT: Table = tenant_owned(Product, "seller_id")
PRICE: Table = tenant_owned(Price, "seller_id")
SELLER: Table = tenant_owned(SellerProfile, "seller_id")
_CONTENT = ("name", "description", "category", "unit_price", "currency", "quantity_rule", "unit", "tax_category", "kind", "policy")
_PRICE_CONTENT = ("model",)
_SELLER_CONTENT = ("currency", "currencies", "country", "time_zone", "issue_day", "scheduled")


async def _upsert(
    session: AsyncSession, table: Table, row: dict[str, Any], keys: list[str], content: tuple[str, ...], also: dict[str, Any] | None = None
) -> bool:
    """Insert or update; an identical body leaves the row (and updated_at) alone. Whether it changed.
    `also`: more columns an update sets (a revision counter)."""
    insert = pg_insert(table).values(**row)
    upsert = insert.on_conflict_do_update(
        index_elements=keys,
        set_={**{k: insert.excluded[k] for k in (*content, "updated_at")}, **(also or {})},
        where=or_(*(table.c[k].is_distinct_from(insert.excluded[k]) for k in content)),
    ).returning(table.c[keys[-1]])
    return (await session.execute(upsert)).first() is not None


async def upsert_product(session: AsyncSession, row: dict[str, Any]) -> tuple[Any, bool]:
    changed = await _upsert(session, PRODUCT, row, ["seller_id", "code"], _CONTENT, {"revision": PRODUCT.c.revision + 1})
    return await get_product(session, row["seller_id"], row["code"]), changed


async def get_product(session: AsyncSession, seller_id: str, code: str) -> Any:
    query = select_scoped(PRODUCT, seller_id).where(PRODUCT.c.code == code)
    return (await session.execute(query)).first()


async def list_products(session: AsyncSession, seller_id: str, after: str | None, limit: int) -> list[Any]:
    query = select_scoped(PRODUCT, seller_id).order_by(PRODUCT.c.code).limit(limit)
    if after:
        query = query.where(PRODUCT.c.code > after)
    return list((await session.execute(query)).all())


async def products_of(session: AsyncSession, seller_ids: Iterable[str]) -> list[Any]:
    query = select(PRODUCT).where(PRODUCT.c.seller_id.in_(list(set(seller_ids))))
    return list((await session.execute(query)).all())


async def upsert_price(session: AsyncSession, row: dict[str, Any]) -> tuple[Any, bool]:
    """One entry of one currency's list (a markup entry's currency is "")."""
    changed = await _upsert(session, PRICE, row, ["seller_id", "product_code", "effective_from", "currency"], _PRICE_CONTENT)
    query = select_scoped(PRICE, row["seller_id"]).where(
        PRICE.c.product_code == row["product_code"], PRICE.c.effective_from == row["effective_from"], PRICE.c.currency == row["currency"]
    )
    return (await session.execute(query)).first(), changed


async def prices_of(session: AsyncSession, seller_ids: Iterable[str], product_code: str | None = None) -> list[Any]:
    query = select(PRICE).where(PRICE.c.seller_id.in_(list(set(seller_ids))))
    if product_code is not None:
        query = query.where(PRICE.c.product_code == product_code)
    return list((await session.execute(query.order_by(PRICE.c.product_code, PRICE.c.effective_from, PRICE.c.currency))).all())


async def upsert_seller(session: AsyncSession, row: dict[str, Any]) -> tuple[Any, bool]:
    changed = await _upsert(session, SELLER, row, ["seller_id"], _SELLER_CONTENT)
    return await get_seller(session, row["seller_id"]), changed


async def get_seller(session: AsyncSession, seller_id: str) -> Any:
    return (await session.execute(select_scoped(SELLER, seller_id))).first()


async def scheduled_sellers(session: AsyncSession) -> list[Any]:
    return list((await session.execute(select(SELLER).where(SELLER.c.scheduled.is_(True)).order_by(SELLER.c.seller_id))).all())
