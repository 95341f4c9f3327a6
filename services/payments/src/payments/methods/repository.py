"""Every query on payment methods and provider customers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table, and_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.methods.models import PaymentMethod, ProviderCustomer

METHOD: Table = PaymentMethod.__table__  # type: ignore[attr-defined]
CUSTOMER: Table = ProviderCustomer.__table__  # type: ignore[attr-defined]


async def insert_method(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(
        pg_insert(METHOD).values(**row).on_conflict_do_nothing(index_elements=["tenant", "method_id"]).returning(METHOD.c.method_id)
    )
    return result.first() is not None


async def get_method(session: AsyncSession, tenant: str, method_id: str, *, lock: bool = False) -> Any:
    query = select(METHOD).where(METHOD.c.tenant == tenant, METHOD.c.method_id == method_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def find_method(session: AsyncSession, tenant: str, provider: str, *, setup_ref: str | None = None, method_ref: str | None = None) -> Any:
    query = select(METHOD).where(METHOD.c.tenant == tenant, METHOD.c.provider == provider).with_for_update()
    query = query.where(METHOD.c.setup_ref == setup_ref) if setup_ref is not None else query.where(METHOD.c.method_ref == method_ref)
    return (await session.execute(query)).first()


async def list_methods(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    query = select(METHOD).where(METHOD.c.tenant == tenant, METHOD.c.account_id == account_id).order_by(METHOD.c.created_at, METHOD.c.method_id)
    return list((await session.execute(query)).all())


async def collecting_method(session: AsyncSession, tenant: str, account_id: str) -> Any:
    """The buyer's method to collect from: the most recently activated card or mandate."""
    query = (
        select(METHOD)
        .where(METHOD.c.tenant == tenant, METHOD.c.account_id == account_id, METHOD.c.status == "active", METHOD.c.type.in_(["card", "direct_debit"]))
        .order_by(METHOD.c.updated_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def accounts_with_collecting_method(session: AsyncSession, accounts: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (tenant, account) have a card or mandate to collect from (`collecting_method`), in one query."""
    accounts = sorted(set(accounts))
    if not accounts:
        return set()
    wanted = text("SELECT k.tenant, k.account_id FROM unnest(CAST(:tenant AS text[]), CAST(:account AS text[])) AS k(tenant, account_id)")
    keys = wanted.columns(tenant=String, account_id=String).subquery("k")
    query = (
        select(METHOD.c.tenant, METHOD.c.account_id)
        .distinct()
        .join(keys, and_(METHOD.c.tenant == keys.c.tenant, METHOD.c.account_id == keys.c.account_id))
        .where(METHOD.c.status == "active", METHOD.c.type.in_(["card", "direct_debit"]))
    )
    rows = await session.execute(query, {"tenant": [a[0] for a in accounts], "account": [a[1] for a in accounts]})
    return {(r.tenant, r.account_id) for r in rows}


async def update_method(session: AsyncSession, tenant: str, method_id: str, **values: Any) -> None:
    await session.execute(update(METHOD).where(METHOD.c.tenant == tenant, METHOD.c.method_id == method_id).values(**values))


async def get_customer(session: AsyncSession, tenant: str, account_id: str, provider: str) -> str | None:
    query = select(CUSTOMER.c.customer_ref).where(CUSTOMER.c.tenant == tenant, CUSTOMER.c.account_id == account_id, CUSTOMER.c.provider == provider)
    return (await session.execute(query)).scalar_one_or_none()


async def insert_customer(session: AsyncSession, tenant: str, account_id: str, provider: str, customer_ref: str) -> None:
    values = {"tenant": tenant, "account_id": account_id, "provider": provider, "customer_ref": customer_ref}
    await session.execute(pg_insert(CUSTOMER).values(**values).on_conflict_do_nothing())
