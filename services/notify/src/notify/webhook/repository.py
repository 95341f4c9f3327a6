"""Every query on webhook endpoints and deliveries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notify.webhook.models import WebhookDelivery, WebhookEndpoint

ENDPOINT: Table = WebhookEndpoint.__table__  # type: ignore[attr-defined]
DELIVERY: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]


async def insert_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> bool:
    stmt = pg_insert(ENDPOINT).values(**endpoint.model_dump()).on_conflict_do_nothing(index_elements=["endpoint_id"]).returning(ENDPOINT.c.endpoint_id)
    return (await session.execute(stmt)).first() is not None


async def get_endpoint(session: AsyncSession, tenant: str, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint | None:
    query = select(ENDPOINT).where(ENDPOINT.c.tenant == tenant, ENDPOINT.c.endpoint_id == endpoint_id, ENDPOINT.c.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return WebhookEndpoint.model_validate(row._mapping) if row is not None else None


async def endpoint_by_id(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint | None:
    row = (await session.execute(select(ENDPOINT).where(ENDPOINT.c.endpoint_id == endpoint_id))).first()
    return WebhookEndpoint.model_validate(row._mapping) if row is not None else None


async def list_endpoints(session: AsyncSession, tenant: str) -> list[WebhookEndpoint]:
    query = select(ENDPOINT).where(ENDPOINT.c.tenant == tenant, ENDPOINT.c.deleted_at.is_(None)).order_by(ENDPOINT.c.created_at, ENDPOINT.c.endpoint_id)
    return [WebhookEndpoint.model_validate(r._mapping) for r in await session.execute(query)]


async def subscribed(session: AsyncSession, tenant: str, event_type: str) -> list[WebhookEndpoint]:
    """The tenant's live endpoints subscribed to `event_type` (or to everything)."""
    types = ENDPOINT.c.event_types
    query = select(ENDPOINT).where(
        ENDPOINT.c.tenant == tenant,
        ENDPOINT.c.deleted_at.is_(None),
        or_(types.contains([event_type]), types.contains(["*"])),
    )
    return [WebhookEndpoint.model_validate(r._mapping) for r in await session.execute(query)]


async def update_endpoint(session: AsyncSession, endpoint_id: str, **values: Any) -> None:
    await session.execute(update(ENDPOINT).where(ENDPOINT.c.endpoint_id == endpoint_id).values(**values))


async def insert_delivery(session: AsyncSession, delivery: WebhookDelivery) -> bool:
    stmt = pg_insert(DELIVERY).values(**delivery.model_dump()).on_conflict_do_nothing(index_elements=["delivery_id"]).returning(DELIVERY.c.delivery_id)
    return (await session.execute(stmt)).first() is not None


async def claim_due(session: AsyncSession, now: datetime, lease: timedelta, limit: int) -> list[WebhookDelivery]:
    """Take due deliveries for this sender (SKIP LOCKED keeps senders apart; the lease hands a row
    to another sender only if this one dies before it reports back). Each claim is an attempt."""
    due = (
        select(DELIVERY.c.delivery_id)
        .where(DELIVERY.c.status.in_(("pending", "sending")), DELIVERY.c.next_attempt_at <= now)
        .order_by(DELIVERY.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.execute(due)).scalars())
    if not ids:
        return []
    rows = await session.execute(
        update(DELIVERY)
        .where(DELIVERY.c.delivery_id.in_(ids))
        .values(status="sending", attempts=DELIVERY.c.attempts + 1, next_attempt_at=now + lease)
        .returning(*DELIVERY.c)
    )
    return [WebhookDelivery.model_validate(r._mapping) for r in rows]


async def settle(session: AsyncSession, delivery_id: str, **values: Any) -> bool:
    """Record an attempt's outcome, unless the row is no longer this sender's to settle."""
    result = await session.execute(
        update(DELIVERY).where(DELIVERY.c.delivery_id == delivery_id, DELIVERY.c.status == "sending").values(**values).returning(DELIVERY.c.delivery_id)
    )
    return result.first() is not None


async def deliveries_of(session: AsyncSession, tenant: str, endpoint_id: str, limit: int) -> list[WebhookDelivery]:
    query = (
        select(DELIVERY)
        .where(DELIVERY.c.tenant == tenant, DELIVERY.c.endpoint_id == endpoint_id)
        .order_by(DELIVERY.c.created_at.desc(), DELIVERY.c.delivery_id.desc())
        .limit(limit)
    )
    return [WebhookDelivery.model_validate(r._mapping) for r in await session.execute(query)]
