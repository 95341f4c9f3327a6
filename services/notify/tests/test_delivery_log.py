"""The delivery log against the real PostgreSQL, without the broker: deciding is idempotent by
(cause event, template) even without the inbox in front, and a claimed row is not claimed twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing_events import InvoiceIssued, new_event
from notify.delivery import repository as repo
from notify.delivery.models import Delivery
from notify.delivery.service import record_invoice_issued
from notify.sending import LeasedQueue

NOW = datetime(2026, 11, 2, 11, 0, tzinfo=UTC)


async def test_recording_the_same_event_twice_keeps_one_delivery(db: AsyncEngine, make_invoice: Callable[..., InvoiceIssued]) -> None:
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    event = new_event(make_invoice(buyer_account_id=f"acc-{tenant}", buyer_email="ap@example.com"), source="/tests", tenant=tenant)
    sessions = async_sessionmaker(db, expire_on_commit=False)
    for _ in range(2):
        async with sessions() as session, session.begin():
            await record_invoice_issued(session, event, now=NOW, default_sender_email="billing@localhost")
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(repo.DELIVERY).where(repo.DELIVERY.c.tenant == tenant))
    assert count == 1
    await _forget(sessions, tenant)


async def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(db: AsyncEngine, make_invoice: Callable[..., InvoiceIssued]) -> None:
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    # Far in the past, so no running sender of another test would find it due on its own clock.
    long_ago = NOW - timedelta(days=3650)
    event = new_event(make_invoice(buyer_account_id=f"acc-{tenant}", buyer_email="ap@example.com"), source="/tests", tenant=tenant)
    sessions = async_sessionmaker(db, expire_on_commit=False)
    async with sessions() as session, session.begin():
        delivery = await record_invoice_issued(session, event, now=long_ago, default_sender_email="billing@localhost")
        await session.execute(repo.DELIVERY.update().where(repo.DELIVERY.c.delivery_id == delivery.delivery_id).values(next_attempt_at=long_ago))

    queue = LeasedQueue(repo.DELIVERY, Delivery, timedelta(minutes=5))

    def mine(claimed: list) -> list:
        return [d for d in claimed if d.delivery_id == delivery.delivery_id]

    async with sessions() as session, session.begin():
        [first] = mine(await queue.claim(session, long_ago, 500))
    assert first.status == "sending" and first.attempts == 1
    async with sessions() as session, session.begin():
        assert mine(await queue.claim(session, long_ago + timedelta(minutes=4), 500)) == []
    async with sessions() as session, session.begin():
        [again] = mine(await queue.claim(session, long_ago + timedelta(minutes=6), 500))
    assert again.attempts == 2
    await _forget(sessions, tenant)


async def _forget(sessions: async_sessionmaker[AsyncSession], tenant: str) -> None:
    """These rows are due: leave none for the sender of a later test to pick up."""
    async with sessions() as session, session.begin():
        await session.execute(delete(repo.DELIVERY).where(repo.DELIVERY.c.tenant == tenant))
