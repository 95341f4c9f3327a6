"""Every query on attempts and account credit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.collection.models import AccountCredit, Attempt

ATTEMPT: Table = Attempt.__table__  # type: ignore[attr-defined]
CREDIT: Table = AccountCredit.__table__  # type: ignore[attr-defined]


async def insert_attempt(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(
        pg_insert(ATTEMPT).values(**row).on_conflict_do_nothing(index_elements=["invoice_id", "attempt_no"]).returning(ATTEMPT.c.attempt_id)
    )
    return result.first() is not None


async def get_attempt(session: AsyncSession, attempt_id: str, *, lock: bool = False) -> Any:
    query = select(ATTEMPT).where(ATTEMPT.c.attempt_id == attempt_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def attempt_by_ref(session: AsyncSession, tenant: str, provider_ref: str) -> Any:
    query = select(ATTEMPT).where(ATTEMPT.c.tenant == tenant, ATTEMPT.c.provider_ref == provider_ref).with_for_update()
    return (await session.execute(query)).first()


async def attempts_of(session: AsyncSession, tenant: str, invoice_id: str) -> list[Any]:
    query = select(ATTEMPT).where(ATTEMPT.c.tenant == tenant, ATTEMPT.c.invoice_id == invoice_id).order_by(ATTEMPT.c.attempt_no)
    return list((await session.execute(query)).all())


async def next_attempt_to_call(session: AsyncSession, now: datetime) -> Any:
    """One attempt the provider must be called for: new ones not yet sent, and unknown ones due
    for reconciliation. Locked (others skip it) until the caller's transaction ends."""
    due = or_(ATTEMPT.c.next_call_at.is_(None), ATTEMPT.c.next_call_at <= now)
    waiting = or_(and_(ATTEMPT.c.status == "pending", ATTEMPT.c.provider_ref.is_(None)), ATTEMPT.c.status == "unknown")
    query = select(ATTEMPT).where(waiting, due).order_by(ATTEMPT.c.created_at).limit(1).with_for_update(skip_locked=True)
    return (await session.execute(query)).first()


async def update_attempt(session: AsyncSession, attempt_id: str, **values: Any) -> None:
    await session.execute(update(ATTEMPT).where(ATTEMPT.c.attempt_id == attempt_id).values(**values))


async def lock_credit(session: AsyncSession, tenant: str, account_id: str, currency: str) -> Decimal:
    """The buyer's credit, locked until the transaction ends (0 when there is none)."""
    await session.execute(
        pg_insert(CREDIT).values(tenant=tenant, account_id=account_id, currency=currency, amount=Decimal(0)).on_conflict_do_nothing()
    )
    query = select(CREDIT.c.amount).where(CREDIT.c.tenant == tenant, CREDIT.c.account_id == account_id, CREDIT.c.currency == currency).with_for_update()
    return Decimal((await session.execute(query)).scalar_one())


async def add_credit(session: AsyncSession, tenant: str, account_id: str, currency: str, amount: Decimal) -> None:
    await lock_credit(session, tenant, account_id, currency)
    await session.execute(
        update(CREDIT)
        .where(CREDIT.c.tenant == tenant, CREDIT.c.account_id == account_id, CREDIT.c.currency == currency)
        .values(amount=CREDIT.c.amount + amount)
    )


async def credits_of(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    query = select(CREDIT).where(CREDIT.c.tenant == tenant, CREDIT.c.account_id == account_id, CREDIT.c.amount != 0).order_by(CREDIT.c.currency)
    return list((await session.execute(query)).all())
