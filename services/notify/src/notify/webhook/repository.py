"""Every query on webhook endpoints and deliveries. Endpoint secrets are sealed in the table
(billing_runtime.crypto): `insert_endpoint` and `set_secrets` seal them, `opened` reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, Table, Text, and_, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from billing_runtime.crypto import PREFIX, Keyring, context
from billing_runtime.tenancy import select_scoped, tenant_owned
from notify.webhook.models import WebhookDelivery, WebhookEndpoint

ENDPOINT: Table = tenant_owned(WebhookEndpoint, "tenant")
DELIVERY: Table = tenant_owned(WebhookDelivery, "tenant")


def where(endpoint: WebhookEndpoint, column: str) -> bytes:
    """Associated data of a sealed secret: a copy in another tenant's or endpoint's row does not open."""
    return context("notify", "webhook_endpoint", endpoint.tenant, endpoint.endpoint_id, column)


def opened(keyring: Keyring, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """The endpoint with its secrets readable (they are sealed in the table)."""
    previous = endpoint.previous_secret
    return endpoint.model_copy(
        update={
            "secret": keyring.open(endpoint.secret, where(endpoint, "secret")),
            "previous_secret": keyring.open(previous, where(endpoint, "previous_secret")) if previous else None,
        }
    )


async def insert_endpoint(session: AsyncSession, keyring: Keyring, endpoint: WebhookEndpoint) -> bool:
    row = {**endpoint.model_dump(), "secret": keyring.seal(endpoint.secret, where(endpoint, "secret"))}
    stmt = pg_insert(ENDPOINT).values(**row).on_conflict_do_nothing(index_elements=["endpoint_id"]).returning(ENDPOINT.c.endpoint_id)
    return (await session.execute(stmt)).first() is not None


async def get_endpoint(session: AsyncSession, tenant: str, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint | None:
    query = select_scoped(ENDPOINT, tenant).where(ENDPOINT.c.endpoint_id == endpoint_id, ENDPOINT.c.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return WebhookEndpoint.model_validate(row._mapping) if row is not None else None


async def list_endpoints(session: AsyncSession, tenant: str) -> list[WebhookEndpoint]:
    query = select_scoped(ENDPOINT, tenant).where(ENDPOINT.c.deleted_at.is_(None)).order_by(ENDPOINT.c.created_at, ENDPOINT.c.endpoint_id)
    return [WebhookEndpoint.model_validate(r._mapping) for r in await session.execute(query)]


async def subscribed(session: AsyncSession, tenant: str, event_type: str) -> list[WebhookEndpoint]:
    """The tenant's live endpoints subscribed to `event_type` (or to everything)."""
    types = ENDPOINT.c.event_types
    query = select_scoped(ENDPOINT, tenant).where(
        ENDPOINT.c.deleted_at.is_(None),
        or_(types.contains([event_type]), types.contains(["*"])),
    )
    return [WebhookEndpoint.model_validate(r._mapping) for r in await session.execute(query)]


async def update_endpoint(session: AsyncSession, endpoint_id: str, **values: Any) -> None:
    assert not {"secret", "previous_secret"} & values.keys(), "secrets are set with set_secrets (sealed)"
    await session.execute(update(ENDPOINT).where(ENDPOINT.c.endpoint_id == endpoint_id).values(**values))


async def set_secrets(session: AsyncSession, keyring: Keyring, endpoint: WebhookEndpoint, secret: str, previous: str, previous_expires_at: datetime) -> None:
    await session.execute(
        update(ENDPOINT)
        .where(ENDPOINT.c.endpoint_id == endpoint.endpoint_id)
        .values(
            secret=keyring.seal(secret, where(endpoint, "secret")),
            previous_secret=keyring.seal(previous, where(endpoint, "previous_secret")),
            previous_secret_expires_at=previous_expires_at,
        )
    )


async def reseal_all(conn: AsyncConnection, keyring: Keyring) -> int:
    """Seal again, with the current key, every endpoint secret sealed with an older one (deleted
    endpoints too); how many rows changed."""
    current = f"{PREFIX}{keyring.current}:%"
    stale = or_(ENDPOINT.c.secret.not_like(current), and_(ENDPOINT.c.previous_secret.is_not(None), ENDPOINT.c.previous_secret.not_like(current)))
    rows = (await conn.execute(select(ENDPOINT).where(stale).with_for_update())).all()
    for row in rows:
        endpoint = WebhookEndpoint.model_validate(row._mapping)
        values = {}
        for column in ("secret", "previous_secret"):
            value = getattr(endpoint, column)
            resealed = keyring.reseal(value, where(endpoint, column)) if value else None
            if resealed is not None:
                values[column] = resealed
        await conn.execute(update(ENDPOINT).where(ENDPOINT.c.endpoint_id == endpoint.endpoint_id).values(**values))
    return len(rows)


async def insert_delivery(session: AsyncSession, delivery: WebhookDelivery) -> bool:
    stmt = pg_insert(DELIVERY).values(**delivery.model_dump()).on_conflict_do_nothing(index_elements=["delivery_id"]).returning(DELIVERY.c.delivery_id)
    return (await session.execute(stmt)).first() is not None


async def endpoints_by_id(session: AsyncSession, keyring: Keyring, endpoint_ids: list[str]) -> dict[str, WebhookEndpoint]:
    """The endpoints named (deleted ones included), by id, in one query, their secrets opened."""
    if not endpoint_ids:
        return {}
    rows = await session.execute(select(ENDPOINT).where(ENDPOINT.c.endpoint_id == any_(bindparam("ids", endpoint_ids, type_=ARRAY(Text)))))
    return {r.endpoint_id: opened(keyring, WebhookEndpoint.model_validate(r._mapping)) for r in rows}


async def mark_sent_many(session: AsyncSession, sent: list[tuple[str, int, datetime]]) -> set[str]:
    """Mark each (delivery id, status code, delivered at) delivered in one statement, unless the
    row is no longer `sending`; returns the ids marked."""
    if not sent:
        return set()
    given = select(
        func.unnest(bindparam("ids", [i for i, _, _ in sent], type_=ARRAY(Text))).label("delivery_id"),
        func.unnest(bindparam("codes", [c for _, c, _ in sent], type_=ARRAY(Integer))).label("status_code"),
        func.unnest(bindparam("ats", [at for _, _, at in sent], type_=ARRAY(DateTime(timezone=True)))).label("delivered_at"),
    ).subquery("sent")
    result = await session.execute(
        update(DELIVERY)
        .where(DELIVERY.c.delivery_id == given.c.delivery_id, DELIVERY.c.status == "sending")
        .values(status="sent", delivered_at=given.c.delivered_at, next_attempt_at=None, last_error=None, last_status_code=given.c.status_code)
        .returning(DELIVERY.c.delivery_id)
    )
    return set(result.scalars())


async def settle(session: AsyncSession, delivery_id: str, **values: Any) -> bool:
    """Record an attempt's outcome, unless the row is no longer this sender's to settle."""
    result = await session.execute(
        update(DELIVERY).where(DELIVERY.c.delivery_id == delivery_id, DELIVERY.c.status == "sending").values(**values).returning(DELIVERY.c.delivery_id)
    )
    return result.first() is not None


async def deliveries_of(session: AsyncSession, tenant: str, endpoint_id: str, limit: int) -> list[WebhookDelivery]:
    query = (
        select_scoped(DELIVERY, tenant)
        .where(DELIVERY.c.endpoint_id == endpoint_id)
        .order_by(DELIVERY.c.created_at.desc(), DELIVERY.c.delivery_id.desc())
        .limit(limit)
    )
    return [WebhookDelivery.model_validate(r._mapping) for r in await session.execute(query)]
