"""`Outbox.add_many` writes the rows `Outbox.add` writes, in one statement, against a real PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_events import account_id, new_event
from billing_events.testing import make_customer
from billing_events.topics import CUSTOMERS
from billing_runtime.db import create_engine, schema_metadata
from billing_runtime.kafka import CachedPartitioner
from billing_runtime.outbox import Outbox, OutboxRelay, outbox_table
from billing_runtime.testing import all_events


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    e = create_engine(database_url)
    yield e
    await e.dispose()


async def new_outbox(engine: AsyncEngine, *, pending: bool = False) -> Outbox:
    metadata = schema_metadata(f"ob_{uuid.uuid4().hex[:8]}")
    table = outbox_table(metadata, pending=pending)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{metadata.schema}"'))
        await conn.run_sync(metadata.create_all)
    return Outbox(table)


def events(tenant: str, n: int, *, accounts: int | None = None) -> list[Any]:
    """`n` CustomerUpserted of `tenant`: one customer each, or with `accounts`, the revisions in
    turn of that many customers (event i is customer i % accounts's)."""
    written = []
    for i in range(n):
        c, revision = (i, 1) if accounts is None else (i % accounts, i // accounts + 1)
        data = make_customer(tenant, f"c{c}", name=f"Customer {i}", billing_email="ap@example.com", revision=revision)
        written.append(new_event(data, source="test", tenant=tenant, subject=f"c{c}"))
    return written


async def stored(engine: AsyncEngine, outbox: Outbox) -> list[tuple[Any, ...]]:
    t = outbox.table
    async with engine.connect() as conn:
        rows = await conn.execute(select(t.c.event_id, t.c.event_type, t.c.topic, t.c.key, t.c.headers, t.c.value, t.c.sent_at).order_by(t.c.id))
        return [tuple(r) for r in rows]


@contextlib.asynccontextmanager
async def relay_of(engine: AsyncEngine, outbox: Outbox, kafka_bootstrap: str, service: str, **producer: Any) -> AsyncIterator[OutboxRelay]:
    """A relay of `outbox` with a producer of its own (`producer`: options for it), stopped after."""
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, partitioner=CachedPartitioner(), acks="all", enable_idempotence=False, **producer)
    await p.start()
    try:
        yield OutboxRelay(service=service, engine=engine, table=outbox.table, producer=p)
    finally:
        await p.stop()


def assert_each_account_in_order(seen: list[Any], written: list[Any], tenant: str, accounts: int) -> None:
    for n in range(accounts):
        account = account_id(tenant, f"c{n}")
        assert [e.id for e in seen if e.data.account_id == account] == [e.id for e in written if e.data.account_id == account]


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


async def pending_ids(engine: AsyncEngine, outbox: Outbox) -> list[int]:
    assert outbox.pending is not None
    async with engine.connect() as conn:
        return list((await conn.scalars(select(outbox.pending.c.id).order_by(outbox.pending.c.id))).all())


async def test_with_outbox_pending_the_same_rows_are_written_and_their_ids_listed_as_unsent(engine: AsyncEngine) -> None:
    plain, pending = await new_outbox(engine), await new_outbox(engine, pending=True)
    batch = events("partner-b", 12)
    async with engine.begin() as conn:
        await plain.add_many(conn, batch)
    async with engine.begin() as conn:
        await pending.add_many(conn, batch[:8])
    async with engine.begin() as conn:
        await pending.add(conn, *batch[6:])  # two already written: no second row, no second pending id
    assert await stored(engine, pending) == await stored(engine, plain)
    t = pending.table
    async with engine.connect() as conn:
        ids = list((await conn.scalars(select(t.c.id).order_by(t.c.id))).all())
    assert len(ids) == 12
    assert await pending_ids(engine, pending) == ids


async def test_with_outbox_pending_marking_sent_is_one_statement_of_hot_updates(engine: AsyncEngine) -> None:
    """The relay's mark-sent leaves the rows' indexes alone (PostgreSQL's own count of the
    transaction's HOT updates), empties the pending ids, and sets `sent_at`."""
    outbox = await new_outbox(engine, pending=True)
    async with engine.begin() as conn:
        await outbox.add_many(conn, events("partner-c", 20))
    relay = OutboxRelay(service="test", engine=engine, table=outbox.table, producer=None)
    t = outbox.table
    async with engine.begin() as conn:
        rows = (await conn.execute(relay._unsent)).all()
        assert len(rows) == 20
        await conn.execute(relay._mark_sent, {"ids": [r.id for r in rows]})
        hot = await conn.scalar(text(f"SELECT pg_stat_get_xact_tuples_hot_updated('\"{t.schema}\".outbox'::regclass)"))
    assert hot == 20
    assert await pending_ids(engine, outbox) == []
    assert all(r[6] is not None for r in await stored(engine, outbox))


async def test_the_relay_sends_record_batches_that_keep_each_accounts_order_across_full_batches(engine: AsyncEngine, kafka_bootstrap: str) -> None:
    """The relay fills one record batch per partition; with batches of 4 kB (a few events each) an
    account's events span many of them, and still arrive once each, in the order written."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    written = events(tenant, 150, accounts=5)
    outbox = await new_outbox(engine, pending=True)
    async with engine.begin() as conn:
        await outbox.add_many(conn, written)
    async with relay_of(engine, outbox, kafka_bootstrap, f"test-{tenant}", max_batch_size=4096) as relay:
        assert await relay.publish_batch() == 150
        assert await relay.publish_batch() == 0  # all marked sent
    seen = await all_events(kafka_bootstrap, CUSTOMERS.name, match=lambda e: e.tenant == tenant)
    assert len(seen) == 150
    assert_each_account_in_order(seen, written, tenant, 5)


async def test_add_batched_writes_one_message_per_account_and_chunk_and_the_relay_counts_its_events(engine: AsyncEngine, kafka_bootstrap: str) -> None:
    """Batched content mode: rows of one account's events, at most `max_events` each, in order;
    the relay publishes them as they are and counts the events (`billing_outbox_events_*`)."""
    from prometheus_client import REGISTRY

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    written = events(tenant, 30, accounts=3)
    outbox = await new_outbox(engine, pending=True)
    async with engine.begin() as conn:
        await outbox.add_batched(conn, written, max_events=4)
    rows = await stored(engine, outbox)
    assert len(rows) == 3 * 3  # 10 events an account: chunks of 4, 4 and 2
    assert [r[0] for r in rows[:3]] == [written[0].id, written[12].id, written[24].id]  # a row's id: its first event's
    assert all(dict(r[4])["content-type"] == "application/cloudevents-batch+json" for r in rows)
    assert [int(dict(r[4])["billing_batch_size"]) for r in rows] == [4, 4, 2] * 3
    # A byte bound as well: room for two events' documents (and their commas).
    from billing_events.envelope import structured_json

    small = await new_outbox(engine)
    async with engine.begin() as conn:
        await small.add_batched(conn, written[:9], max_bytes=2 * (len(structured_json(written[0])) + 1))
    assert [int(dict(r[4])["billing_batch_size"]) for r in await stored(engine, small)] == [2, 1, 2, 1, 2, 1]

    service = f"test-{tenant}"
    async with relay_of(engine, outbox, kafka_bootstrap, service) as relay:
        assert await relay.publish_batch() == 9  # rows (messages)
    labels = {"service": service, "topic": CUSTOMERS.name}
    assert REGISTRY.get_sample_value("billing_outbox_events_published_total", labels) == 30
    assert REGISTRY.get_sample_value("billing_outbox_messages_published_total", labels) == 9
    assert REGISTRY.get_sample_value("billing_outbox_events_per_message_count", labels) == 9
    assert REGISTRY.get_sample_value("billing_outbox_events_per_message_sum", labels) == 30
    seen = await all_events(kafka_bootstrap, CUSTOMERS.name, match=lambda e: e.tenant == tenant)
    assert sorted(e.id for e in seen) == sorted(e.id for e in written)
    assert_each_account_in_order(seen, written, tenant, 3)
