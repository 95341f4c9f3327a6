"""`Outbox.add_many` writes the rows `Outbox.add` writes, in one statement, against a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_events import CustomerUpserted, account_id, new_event
from billing_runtime.db import create_engine, schema_metadata
from billing_runtime.outbox import Outbox, outbox_table


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_engine(database_url)
    yield e
    await e.dispose()


async def new_outbox(engine: AsyncEngine) -> Outbox:
    metadata = schema_metadata(f"ob_{uuid.uuid4().hex[:8]}")
    table = outbox_table(metadata)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)
    return Outbox(table)


def events(tenant: str, n: int) -> list[Any]:
    return [
        new_event(
            CustomerUpserted(
                account_id=account_id(tenant, f"c{i}"),
                partner_id=tenant,
                external_id=f"c{i}",
                name=f"Customer {i}",
                billing_email="ap@example.com",
                country="IE",
                currency="EUR",
                revision=1,
            ),
            source="test",
            tenant=tenant,
            subject=f"c{i}",
        )
        for i in range(n)
    ]


async def stored(engine: AsyncEngine, outbox: Outbox) -> list[tuple[Any, ...]]:
    t = outbox.table
    async with engine.connect() as conn:
        rows = await conn.execute(select(t.c.event_id, t.c.event_type, t.c.topic, t.c.key, t.c.headers, t.c.value, t.c.sent_at).order_by(t.c.id))
        return [tuple(r) for r in rows]


async def test_add_many_writes_what_add_writes_in_order_with_the_trace(engine: AsyncEngine) -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    one_by_one, batched = await new_outbox(engine), await new_outbox(engine)
    batch = events("partner-a", 25)
    with trace.get_tracer("test").start_as_current_span("post a batch") as span:
        async with engine.begin() as conn:
            await one_by_one.add(conn, *batch)
        async with engine.begin() as conn:
            await batched.add_many(conn, [*batch, batch[3]])  # an event id twice is written once
    expected = await stored(engine, one_by_one)
    assert await stored(engine, batched) == expected
    assert [r[0] for r in expected] == [e.id for e in batch]
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert all(dict(r[4])["traceparent"].split("-")[1] == trace_id for r in expected)


async def test_add_many_of_nothing_writes_nothing(engine: AsyncEngine) -> None:
    outbox = await new_outbox(engine)
    async with engine.begin() as conn:
        await outbox.add_many(conn, [])
    assert await stored(engine, outbox) == []
