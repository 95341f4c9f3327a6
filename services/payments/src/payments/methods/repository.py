"""Every query on payment methods and provider customers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, scoped_pairs, select_scoped, tenant_owned
from payments.methods.models import PaymentMethod, ProviderCustomer
from payments.methods.schemas import MethodType

# The kinds a provider collects (a bank transfer is the buyer's own doing).
_COLLECTED = [MethodType.CARD.value, MethodType.DIRECT_DEBIT.value]

METHOD: Table = tenant_owned(PaymentMethod, "tenant")
CUSTOMER: Table = tenant_owned(ProviderCustomer, "tenant")


async def insert_method(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(pg_insert(METHOD).values(**row).on_conflict_do_nothing(index_elements=["tenant", "method_id"]).returning(METHOD.c.method_id))
    return result.first() is not None


async def get_method(session: AsyncSession, tenant: str, method_id: str, *, account_id: str | None = None, lock: bool = False) -> Any:
    """A method by id within the tenant; with `account_id`, only if it is that buyer's (another
    buyer's id finds nothing, as an unknown one)."""
    query = of_account(select_scoped(METHOD, tenant).where(METHOD.c.method_id == method_id), METHOD.c.account_id, account_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def find_method(session: AsyncSession, tenant: str, provider: str, *, setup_ref: str | None = None, method_ref: str | None = None) -> Any:
    query = select_scoped(METHOD, tenant).where(METHOD.c.provider == provider).with_for_update()
    query = query.where(METHOD.c.setup_ref == setup_ref) if setup_ref is not None else query.where(METHOD.c.method_ref == method_ref)
    return (await session.execute(query)).first()


async def list_methods(session: AsyncSession, tenant: str, account_id: str, *, include_removed: bool = False) -> list[Any]:
    query = select_scoped(METHOD, tenant).where(METHOD.c.account_id == account_id)
    if not include_removed:
        query = query.where(METHOD.c.removed_at.is_(None))
    return list((await session.execute(query.order_by(METHOD.c.created_at, METHOD.c.method_id))).all())


async def collecting_method(session: AsyncSession, tenant: str, account_id: str) -> Any:
    """The buyer's method to collect from: its default, if active; else the most recently
    activated card or mandate."""
    query = (
        select_scoped(METHOD, tenant)
        .where(
            METHOD.c.account_id == account_id,
            METHOD.c.status == "active",
            METHOD.c.type.in_(_COLLECTED),
            METHOD.c.removed_at.is_(None),
        )
        .order_by(METHOD.c.is_default.desc(), METHOD.c.updated_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def accounts_with_collecting_method(session: AsyncSession, accounts: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (tenant, account) have a card or mandate to collect from (`collecting_method`), in one query."""
    accounts = sorted(set(accounts))
    if not accounts:
        return set()
    query = (
        select(METHOD.c.tenant, METHOD.c.account_id).distinct().where(METHOD.c.status == "active", METHOD.c.type.in_(_COLLECTED), METHOD.c.removed_at.is_(None))
    )
    rows = await session.execute(scoped_pairs(query, METHOD, METHOD.c.account_id, accounts))
    return {(r.tenant, r.account_id) for r in rows}


async def make_default(session: AsyncSession, tenant: str, account_id: str, method_id: str | None) -> None:
    """`method_id` the buyer's one default (None: no default). The old default is cleared first:
    a unique index is checked row by row, so one statement flipping both could trip it."""
    await session.execute(
        scoped(update(METHOD), METHOD, tenant).where(METHOD.c.account_id == account_id, METHOD.c.is_default.is_(True)).values(is_default=False)
    )
    if method_id is not None:
        await session.execute(
            scoped(update(METHOD), METHOD, tenant).where(METHOD.c.account_id == account_id, METHOD.c.method_id == method_id).values(is_default=True)
        )


async def lock_account_methods(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    """The buyer's methods, locked, in one order (two changes of its default wait for each other)."""
    query = select_scoped(METHOD, tenant).where(METHOD.c.account_id == account_id).order_by(METHOD.c.method_id).with_for_update()
    return list((await session.execute(query)).all())


async def update_method(session: AsyncSession, tenant: str, method_id: str, **values: Any) -> None:
    await session.execute(scoped(update(METHOD), METHOD, tenant).where(METHOD.c.method_id == method_id).values(**values))


async def get_customer(session: AsyncSession, tenant: str, account_id: str, provider: str) -> str | None:
    query = select_scoped(CUSTOMER, tenant, CUSTOMER.c.customer_ref).where(CUSTOMER.c.account_id == account_id, CUSTOMER.c.provider == provider)
    return (await session.execute(query)).scalar_one_or_none()


async def insert_customer(session: AsyncSession, tenant: str, account_id: str, provider: str, customer_ref: str) -> None:
    values = {"tenant": tenant, "account_id": account_id, "provider": provider, "customer_ref": customer_ref}
    await session.execute(pg_insert(CUSTOMER).values(**values).on_conflict_do_nothing())
