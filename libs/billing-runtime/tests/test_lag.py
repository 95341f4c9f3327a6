"""billing_runtime.lag: a consumer's lag counted from the producer's outbox and the consumer's
inbox, against a real PostgreSQL and the embedded broker (whose end offsets are not used)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from billing_events import new_event
from billing_events.topics import CUSTOMERS
from billing_runtime.config import CommonSettings
from billing_runtime.db import schema_metadata
from billing_runtime.lag import LagMeter
from billing_runtime.service import ServiceRuntime, runtime_tables
from billing_runtime.testing import eventually

from .conftest import customer
from .test_outbox_inbox import Toy


class Producer:
    """A service that only writes events to its outbox; its relay publishes them."""

    def __init__(self, database_url: str, bootstrap: str) -> None:
        self.schema = f"lagsrc_{uuid.uuid4().hex[:8]}"
        self.metadata = schema_metadata(self.schema)
        runtime_tables(self.metadata)
        self.runtime = ServiceRuntime(f"src-{self.schema}", CommonSettings(database_url=database_url, kafka_bootstrap_servers=bootstrap), self.metadata)

    async def create(self) -> None:
        async with self.runtime.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            await conn.run_sync(self.metadata.create_all)


@pytest.fixture
async def source(database_url: str, kafka_bootstrap: str) -> AsyncIterator[Producer]:
    producer = Producer(database_url, kafka_bootstrap)
    await producer.create()
    await producer.runtime.start(consume=False)
    yield producer
    await producer.runtime.stop()


async def test_lag_is_what_the_outbox_published_and_the_inbox_has_not_applied(source: Producer, database_url: str, kafka_bootstrap: str) -> None:
    toy = Toy(database_url, kafka_bootstrap)
    await toy.create()
    # The consumer joins (its group commits the topic's end) and stops: what is published next waits.
    await toy.runtime.start()
    await toy.runtime.wait_consuming()
    await toy.runtime.stop()
    tenants = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    async with source.runtime.transaction() as session:
        await source.runtime.outbox.add_many(session, [new_event(customer(t), source="src", tenant=t) for t in tenants])

    async def published() -> bool:
        async with source.runtime.engine.connect() as conn:
            return await conn.scalar(text(f'SELECT count(*) FROM "{source.schema}".outbox WHERE sent_at IS NOT NULL')) == 40

    await eventually(published, "the published count")
    meter = LagMeter(toy.runtime.name, toy.runtime.inbox_table, toy.runtime.routes, producers=[source.schema])
    other_types = LagMeter(toy.runtime.name, toy.runtime.inbox_table, ["billing.invoicing.invoice_issued.v1"], producers=[source.schema])
    async with toy.runtime.engine.connect() as conn:
        (before,) = await meter.measure(conn)
        assert await other_types.measure(conn) == []  # lag counts only the types the consumer routes
    assert (before.topic, before.published, before.lag) == (CUSTOMERS.name, 40, 40)  # nothing applied: all 40 behind

    await toy.runtime.start()  # resumes from its committed offsets
    try:

        async def applied() -> bool:
            return all([await toy.applied(t) == 1 for t in tenants])

        await eventually(applied, "the applied count", timeout=60)
        found = await meter.export(toy.runtime.engine, [CUSTOMERS.name, "billing.payments"])
        assert [(r.topic, r.lag) for r in found] == [(CUSTOMERS.name, 0)]
        assert REGISTRY.get_sample_value("billing_consumer_lag", {"service": toy.runtime.name, "topic": CUSTOMERS.name}) == 0
        assert REGISTRY.get_sample_value("billing_consumer_lag", {"service": toy.runtime.name, "topic": "billing.payments"}) == 0
        # The low-water mark moved past what was applied: the next measure reads the margin only.
        async with source.runtime.transaction() as session:
            late = f"t-{uuid.uuid4().hex[:8]}"
            await source.runtime.outbox.add(session, new_event(customer(late), source="src", tenant=late))
        await eventually(lambda: _applied_once(toy, late), "the late event applied once", timeout=60)
        async with toy.runtime.engine.connect() as conn:
            (after,) = await meter.measure(conn)
        assert after.lag == 0
    finally:
        await toy.runtime.stop()


async def _applied_once(toy: Toy, tenant: str) -> bool:
    return await toy.applied(tenant) == 1


async def test_a_batch_row_counts_as_its_events_until_the_consumer_applied_it(database_url: str) -> None:
    """A row of `Outbox.add_batched` (one message of several events) lags by its events; once its
    first event is in the consumer's inbox (a batch message is applied in one transaction), by none."""
    from billing_runtime.db import create_engine
    from billing_runtime.outbox import Outbox

    schema = f"lagb_{uuid.uuid4().hex[:8]}"
    metadata = schema_metadata(schema)
    outbox_table, inbox_table = runtime_tables(metadata)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(metadata.create_all)
        tenant = f"t-{uuid.uuid4().hex[:6]}"
        single = new_event(customer(tenant), source="src", tenant=tenant)
        batch = [new_event(customer(tenant, f"n{i}"), source="src", tenant=tenant) for i in range(7)]
        async with engine.begin() as conn:
            await Outbox(outbox_table).add(conn, single)
            await Outbox(outbox_table).add_batched(conn, batch)
            await conn.execute(text(f'UPDATE "{schema}".outbox SET sent_at = now()'))
        meter = LagMeter("consumer", inbox_table, [single.type], producers=[schema])
        async with engine.connect() as conn:
            [found] = await meter.measure(conn)
        assert (found.topic, found.published, found.lag) == (CUSTOMERS.name, 8, 8)
        async with engine.begin() as conn:
            for event in (single, batch[0]):
                await conn.execute(
                    text(f'INSERT INTO "{schema}".inbox (event_id, event_type, topic, partition, "offset") VALUES (:id, :type, :topic, 0, 0)'),
                    {"id": event.id, "type": event.type, "topic": CUSTOMERS.name},
                )
        async with engine.connect() as conn:
            [found] = await meter.measure(conn)
        assert (found.published, found.lag) == (8, 0)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
