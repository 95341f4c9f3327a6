"""Every query on buyers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped_pairs, select_scoped, tenant_owned
from invoicing.buyer.models import Buyer, BuyerCollectingMethod, BuyerMandate
from invoicing.tax.models import VatCheck

# A buyer is its partner's (the seller that announced it): every read is scoped to it.
BUYER: Table = tenant_owned(Buyer, "partner_id")
VAT_CHECK: Table = VatCheck.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
MANDATE: Table = tenant_owned(BuyerMandate, "seller_id")
COLLECTING: Table = tenant_owned(BuyerCollectingMethod, "seller_id")


async def upsert_if_newer(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Store `row` unless a revision at least as new is stored already; True when it was stored."""
    insert = pg_insert(BUYER).values(**row)
    upsert = insert.on_conflict_do_update(
        index_elements=["account_id"],
        set_={k: insert.excluded[k] for k in row if k != "account_id"},
        where=BUYER.c.revision < insert.excluded.revision,
    ).returning(BUYER.c.account_id)
    return (await session.execute(upsert)).first() is not None


async def get(session: AsyncSession, tenant: str, account_id: str) -> Any:
    return (await session.execute(select_scoped(BUYER, tenant).where(BUYER.c.account_id == account_id))).first()


async def insert_vat_check(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(pg_insert(VAT_CHECK).values(**row).on_conflict_do_nothing(index_elements=["check_id"]))


async def vat_checks(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    """The checks of `tenant`'s buyer `account_id` (none when the buyer is another tenant's)."""
    buyer = select_scoped(BUYER, tenant, BUYER.c.account_id).where(BUYER.c.account_id == account_id)
    stmt = select(VAT_CHECK).where(VAT_CHECK.c.account_id.in_(buyer)).order_by(VAT_CHECK.c.checked_at)
    return list((await session.execute(stmt)).all())


async def get_many(session: AsyncSession, keys: list[tuple[str, str]]) -> list[Any]:
    """One query for many buyers, each (tenant, account id): the pairs travel as two array parameters."""
    if not keys:
        return []
    return list((await session.execute(scoped_pairs(select(BUYER), BUYER, BUYER.c.account_id, keys))).all())


async def put_mandate(session: AsyncSession, row: dict[str, Any]) -> None:
    """The buyer's latest mandate state. A mandate other than the stored one replaces it only when
    it is active, or when the stored one no longer is (a new mandate supersedes the old one; a late
    'cancelled' of an old mandate does not undo a newer active one)."""
    insert = pg_insert(MANDATE).values(**row)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["account_id"],
            set_={k: insert.excluded[k] for k in row if k != "account_id"},
            where=(MANDATE.c.mandate_id == insert.excluded.mandate_id) | (insert.excluded.status == "active") | (MANDATE.c.status != "active"),
        )
    )


async def get_mandate(session: AsyncSession, tenant: str, account_id: str) -> Any:
    return (await session.execute(select_scoped(MANDATE, tenant).where(MANDATE.c.account_id == account_id))).first()


async def put_collecting_method(session: AsyncSession, row: dict[str, Any]) -> bool:
    """The buyer's collecting method as payments announced it, unless a later announcement is
    stored (a replayed or late older event changes nothing); True when stored. Announcements of
    the same instant (a fixed clock) apply in the order they arrive: the buyer's partition's order,
    the order payments made them."""
    insert = pg_insert(COLLECTING).values(**row)
    upsert = insert.on_conflict_do_update(
        index_elements=["seller_id", "account_id"],
        set_={k: insert.excluded[k] for k in row if k not in ("seller_id", "account_id")},
        where=COLLECTING.c.changed_at <= insert.excluded.changed_at,
    ).returning(COLLECTING.c.account_id)
    return (await session.execute(upsert)).first() is not None


async def get_collecting_method(session: AsyncSession, tenant: str, account_id: str) -> Any:
    return (await session.execute(select_scoped(COLLECTING, tenant).where(COLLECTING.c.account_id == account_id))).first()
