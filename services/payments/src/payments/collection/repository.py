"""Every query on attempts, collection settings and account credit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Table, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, select_scoped, tenant_owned
from payments.collection.models import AccountCredit, Attempt, CollectionSetting

ATTEMPT: Table = tenant_owned(Attempt, "tenant")
CREDIT: Table = tenant_owned(AccountCredit, "tenant")
SETTING: Table = tenant_owned(CollectionSetting, "tenant")
OPEN_STATES = ("pending", "processing", "unknown")


async def insert_attempt(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(
        pg_insert(ATTEMPT).values(**row).on_conflict_do_nothing(index_elements=["invoice_id", "attempt_no"]).returning(ATTEMPT.c.attempt_id)
    )
    return result.first() is not None


async def get_attempt(session: AsyncSession, attempt_id: str, *, lock: bool = False) -> Any:
    query = select(ATTEMPT).where(ATTEMPT.c.attempt_id == attempt_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def attempt_by_ref(session: AsyncSession, tenant: str, provider_ref: str) -> Any:
    query = select_scoped(ATTEMPT, tenant).where(ATTEMPT.c.provider_ref == provider_ref).with_for_update()
    return (await session.execute(query)).first()


async def attempts_of(session: AsyncSession, tenant: str, invoice_id: str) -> list[Any]:
    query = select_scoped(ATTEMPT, tenant).where(ATTEMPT.c.invoice_id == invoice_id).order_by(ATTEMPT.c.attempt_no)
    return list((await session.execute(query)).all())


async def earlier_attempts(session: AsyncSession, tenant: str, invoice_id: str, attempt_no: int) -> list[Any]:
    """The invoice's attempts before `attempt_no`, locked in order (before the invoice is, as
    the webhooks lock them) until the transaction ends."""
    query = (
        select_scoped(ATTEMPT, tenant)
        .where(ATTEMPT.c.invoice_id == invoice_id, ATTEMPT.c.attempt_no < attempt_no)
        .order_by(ATTEMPT.c.attempt_no)
        .with_for_update()
    )
    return list((await session.execute(query)).all())


async def next_attempt_to_call(session: AsyncSession, now: datetime) -> Any:
    """One attempt the provider must be called or asked about: new ones not yet sent, unknown
    ones due for reconciliation, processing ones due for a check. Locked (others skip it) until
    the caller's transaction ends."""
    due = or_(ATTEMPT.c.next_call_at.is_(None), ATTEMPT.c.next_call_at <= now)
    query = select(ATTEMPT).where(ATTEMPT.c.status.in_(OPEN_STATES), due).order_by(ATTEMPT.c.created_at).limit(1).with_for_update(skip_locked=True)
    return (await session.execute(query)).first()


async def wake_waiting(session: AsyncSession, tenant: str, invoice_id: str, now: datetime) -> None:
    """The invoice's attempts waiting for an earlier one to be final may go now."""
    await session.execute(
        scoped(update(ATTEMPT), ATTEMPT, tenant)
        .where(ATTEMPT.c.invoice_id == invoice_id, ATTEMPT.c.status == "pending", ATTEMPT.c.next_call_at > now)
        .values(next_call_at=now)
    )


async def open_attempts(session: AsyncSession) -> list[Any]:
    """Per provider and open state: how many attempts, and since when the oldest unknown one is."""
    query = (
        select(ATTEMPT.c.provider, ATTEMPT.c.status, func.count().label("attempts"), func.min(ATTEMPT.c.unknown_since).label("unknown_since"))
        .where(ATTEMPT.c.status.in_(OPEN_STATES))
        .group_by(ATTEMPT.c.provider, ATTEMPT.c.status)
    )
    return list((await session.execute(query)).all())


async def surplus_policy(session: AsyncSession, tenant: str) -> str:
    found = (await session.execute(select_scoped(SETTING, tenant, SETTING.c.surplus))).scalar_one_or_none()
    return found or "refund"


async def get_setting(session: AsyncSession, tenant: str) -> Any:
    return (await session.execute(select_scoped(SETTING, tenant))).first()


async def upsert_setting(session: AsyncSession, row: dict[str, Any]) -> None:
    statement = pg_insert(SETTING).values(**row)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["tenant"], set_={"surplus": statement.excluded.surplus, "updated_at": statement.excluded.updated_at})
    )


async def update_attempt(session: AsyncSession, attempt_id: str, **values: Any) -> None:
    await session.execute(update(ATTEMPT).where(ATTEMPT.c.attempt_id == attempt_id).values(**values))


async def lock_credit(session: AsyncSession, tenant: str, account_id: str, currency: str) -> Decimal:
    """The buyer's credit, locked until the transaction ends (0 when there is none)."""
    await session.execute(pg_insert(CREDIT).values(tenant=tenant, account_id=account_id, currency=currency, amount=Decimal(0)).on_conflict_do_nothing())
    query = select_scoped(CREDIT, tenant, CREDIT.c.amount).where(CREDIT.c.account_id == account_id, CREDIT.c.currency == currency).with_for_update()
    return Decimal((await session.execute(query)).scalar_one())


async def lock_credits(session: AsyncSession, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], Decimal]:
    """`lock_credit` for a batch of (tenant, account, currency): every one's credit, locked until
    the transaction ends, in two statements (their rows made first where missing, as `lock_credit` does)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    await session.execute(
        pg_insert(CREDIT).values([{"tenant": t, "account_id": a, "currency": c, "amount": Decimal(0)} for t, a, c in keys]).on_conflict_do_nothing()
    )
    wanted = (
        text(
            "SELECT k.tenant, k.account_id, k.currency FROM unnest(CAST(:tenant AS text[]), CAST(:account AS text[]), CAST(:currency AS text[]))"
            " AS k(tenant, account_id, currency)"
        )
        .columns(tenant=String, account_id=String, currency=String)
        .subquery("k")
    )
    query = (
        select(CREDIT.c.tenant, CREDIT.c.account_id, CREDIT.c.currency, CREDIT.c.amount)
        .join(wanted, and_(CREDIT.c.tenant == wanted.c.tenant, CREDIT.c.account_id == wanted.c.account_id, CREDIT.c.currency == wanted.c.currency))
        .order_by(CREDIT.c.tenant, CREDIT.c.account_id, CREDIT.c.currency)
        .with_for_update(of=CREDIT)
    )
    params = {"tenant": [k[0] for k in keys], "account": [k[1] for k in keys], "currency": [k[2] for k in keys]}
    return {(r.tenant, r.account_id, r.currency): Decimal(r.amount) for r in await session.execute(query, params)}


async def add_credit(session: AsyncSession, tenant: str, account_id: str, currency: str, amount: Decimal) -> None:
    await lock_credit(session, tenant, account_id, currency)
    await session.execute(
        scoped(update(CREDIT), CREDIT, tenant).where(CREDIT.c.account_id == account_id, CREDIT.c.currency == currency).values(amount=CREDIT.c.amount + amount)
    )


async def credits_of(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    query = select_scoped(CREDIT, tenant).where(CREDIT.c.account_id == account_id, CREDIT.c.amount != 0).order_by(CREDIT.c.currency)
    return list((await session.execute(query)).all())
