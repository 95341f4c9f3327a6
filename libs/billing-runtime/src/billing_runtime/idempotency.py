"""`Idempotency-Key` storage: the first response to a write, replayed for every retry with the same
key and body. One table per service, in the service's own schema, so it survives restarts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from billing_runtime.errors import Conflict

IDEMPOTENT_REQUESTS = Counter("billing_http_idempotent_requests_total", "Writes carrying an Idempotency-Key, by outcome", ["service", "outcome"])
# A claim whose request never finished (the instance died mid-request) may be taken over after this.
STALE_CLAIM = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_key",
        metadata,
        Column("tenant", String, primary_key=True),
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("request_sha256", String, nullable=False),
        Column("method", String, nullable=False),
        Column("path", String, nullable=False),
        Column("status_code", Integer, nullable=True),
        Column("content_type", String, nullable=True),
        Column("response_body", LargeBinary, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("completed_at", DateTime(timezone=True), nullable=True),
    )


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency_key_in_flight"


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    content_type: str | None
    body: bytes


async def claim(
    conn: AsyncConnection, table: Table, *, tenant: str, key: str, fingerprint: str, method: str, path: str, now: datetime, ttl: timedelta
) -> StoredResponse | None:
    """Claim `key` for this request (None: go ahead), or the stored first response to replay.
    The same key with another request is a 409; so is a retry while the first is still running."""
    values = {"tenant": tenant, "key": key, "request_sha256": fingerprint, "method": method, "path": path, "created_at": now}
    inserted = await conn.execute(pg_insert(table).values(**values).on_conflict_do_nothing().returning(table.c.key))
    if inserted.first() is not None:
        return None
    row = (await conn.execute(select(table).where(table.c.tenant == tenant, table.c.key == key).with_for_update())).one()
    expired = row.created_at < now - ttl
    abandoned = row.status_code is None and row.created_at < now - STALE_CLAIM
    if expired or abandoned:
        reset = {**values, "status_code": None, "content_type": None, "response_body": None, "completed_at": None}
        await conn.execute(update(table).where(table.c.tenant == tenant, table.c.key == key).values(**reset))
        return None
    if row.request_sha256 != fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request; use a new key for a new request",
            field="Idempotency-Key",
            first_request=f"{row.method} {row.path}",
        )
    if row.status_code is None:
        raise IdempotencyKeyInFlight("a request with this Idempotency-Key is still being processed; retry shortly", field="Idempotency-Key")
    return StoredResponse(row.status_code, row.content_type, row.response_body or b"")


async def complete(conn: AsyncConnection, table: Table, *, tenant: str, key: str, response: StoredResponse, now: datetime) -> None:
    await conn.execute(
        update(table)
        .where(table.c.tenant == tenant, table.c.key == key)
        .values(status_code=response.status_code, content_type=response.content_type, response_body=response.body, completed_at=now)
    )


async def release(conn: AsyncConnection, table: Table, *, tenant: str, key: str) -> None:
    """Forget an unfinished claim (the request was refused or failed), so a retry runs again."""
    await conn.execute(delete(table).where(table.c.tenant == tenant, table.c.key == key, table.c.status_code.is_(None)))
