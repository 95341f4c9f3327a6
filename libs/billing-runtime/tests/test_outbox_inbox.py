"""The outbox relay and the inbox consumer against a real PostgreSQL and a real Tansu broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from prometheus_client import REGISTRY
from sqlalchemy import select

from billing_events import CloudEvent, CustomerUpserted, new_event, to_kafka
from billing_events.topics import CUSTOMERS, DEAD_LETTER
from billing_runtime.config import CommonSettings
from billing_runtime.outbox import republish
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import REJOIN_SESSION_TIMEOUT_MS, eventually, read_events

from .conftest import TallyToy, customer


class Toy(TallyToy):
    """A throwaway service: counts the CustomerUpserted events it applies, per tenant."""

    def __init__(self, database_url: str, bootstrap: str, *, outbox_pending: bool = False) -> None:
        super().__init__(outbox_pending=outbox_pending)
        settings = CommonSettings(
            database_url=database_url, kafka_bootstrap_servers=bootstrap, consumer_max_attempts=2, consumer_session_timeout_ms=REJOIN_SESSION_TIMEOUT_MS
        )
        self.runtime = ServiceRuntime(f"toy-{self.schema}", settings, self.metadata)
        self.runtime.on(CustomerUpserted, self.count)

    async def inbox(self, event_ids: list[str]) -> dict[str, str]:
        """The inbox status of each of these events that the consumer has recorded."""
        t = self.runtime.inbox_table
        async with self.runtime.sessions() as session:
            return {r.event_id: r.status for r in (await session.execute(select(t.c.event_id, t.c.status).where(t.c.event_id.in_(event_ids)))).all()}

    async def outbox_rows(self, event_ids: list[str]) -> list[tuple[str, bool]]:
        """(event id, sent) of each outbox row of these events, in the order written."""
        t = self.runtime.outbox_table
        async with self.runtime.sessions() as session:
            rows = (await session.execute(select(t.c.event_id, t.c.sent_at).where(t.c.event_id.in_(event_ids)).order_by(t.c.id))).all()
        return [(r.event_id, r.sent_at is not None) for r in rows]

    def duplicates(self) -> float:
        """Events this toy's consumer read again and skipped (already in its inbox)."""
        return REGISTRY.get_sample_value("billing_events_duplicate_total", {"service": self.runtime.name, "type": CustomerUpserted.event_type}) or 0.0


@pytest.fixture(params=[False, True], ids=["unsent-index", "outbox-pending"])
async def toy(request: pytest.FixtureRequest, database_url: str, kafka_bootstrap: str) -> AsyncIterator[Toy]:
    """Each test twice: the outbox's unsent rows found by the partial index, and by `outbox_pending`."""
    toy = Toy(database_url, kafka_bootstrap, outbox_pending=request.param)
    await toy.create()
    await toy.runtime.start()
    await toy.runtime.wait_consuming()
    yield toy
    await toy.runtime.stop()


async def send(producer: AIOKafkaProducer, event: CloudEvent[Any]) -> None:
    m = to_kafka(event)
    await producer.send_and_wait(m.topic, value=m.value, key=m.key, headers=m.headers)


async def test_an_event_delivered_twice_is_applied_once(toy: Toy, producer: AIOKafkaProducer) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    event = new_event(customer(tenant), source="test", tenant=tenant)
    await send(producer, event)
    await send(producer, event)
    marker = new_event(customer(tenant, revision=2), source="test", tenant=tenant)
    await send(producer, marker)
    await eventually(lambda: _equals(toy.applied(tenant), 2))
    # The marker rides the same partition (one account), after both copies: once it is applied,
    # the second copy has been read and skipped, so no wait can change the count.
    assert await toy.applied(tenant) == 2  # the first event once, the marker once
    assert await toy.inbox([event.id, marker.id]) == {event.id: "applied", marker.id: "applied"}


async def _equals(coro: Any, value: Any) -> bool:
    return bool(await coro == value)


def _applied_once(toy: Toy, tenant: str) -> Callable[[], Awaitable[bool]]:
    """A probe for `eventually`: has `tenant`'s one event been applied?"""
    return lambda: _equals(toy.applied(tenant), 1)


async def test_poison_events_are_dead_lettered_and_do_not_block(toy: Toy, producer: AIOKafkaProducer, kafka_bootstrap: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    good = to_kafka(new_event(customer(tenant), source="test", tenant=tenant))
    invalid = good.value.replace(b'"currency":"EUR"', b'"currency":12')
    await producer.send_and_wait(CUSTOMERS.name, value=invalid, key=good.key, headers=good.headers)
    toy.fail_names.add("Always fails")
    failing = new_event(customer(tenant, name="Always fails", revision=2), source="test", tenant=tenant)
    await send(producer, failing)
    after = new_event(customer(tenant, revision=3), source="test", tenant=tenant)
    await send(producer, after)

    await eventually(lambda: _equals(toy.applied(tenant), 1))
    dead = await read_events(kafka_bootstrap, DEAD_LETTER.name, until=lambda seen: len(seen) >= 1, match=lambda e: e.tenant == tenant and e.id == failing.id)
    assert dead[0].data.name == "Always fails"
    async with toy.runtime.sessions() as session:
        rows = (await session.execute(select(toy.runtime.inbox_table).where(toy.runtime.inbox_table.c.status == "dead_lettered"))).all()
    errors = {r.event_id: r.error for r in rows}
    assert "cannot apply Always fails" in errors[failing.id]
    assert any("invalid" in (e or "") for key, e in errors.items() if key != failing.id)


async def test_outbox_publishes_committed_events_only_and_republishes_a_range(toy: Toy, kafka_bootstrap: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    kept = toy.runtime.event(customer(tenant), tenant=tenant)
    async with toy.runtime.transaction() as session:
        await toy.runtime.outbox.add(session, kept)
    lost = toy.runtime.event(customer(tenant, name="rolled back", revision=2), tenant=tenant)
    with pytest.raises(RuntimeError):
        async with toy.runtime.transaction() as session:
            await toy.runtime.outbox.add(session, lost)
            raise RuntimeError("the state change failed")

    seen = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda s: len(s) >= 1, match=lambda e: e.tenant == tenant)
    # The relay publishes outbox rows only: the rolled-back event left none, and the kept one is
    # marked sent, so neither is left to publish.
    await eventually(lambda: _equals(toy.outbox_rows([kept.id, lost.id]), [(kept.id, True)]), "the kept event alone in the outbox, sent")
    seen = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda s: len(s) >= 1, match=lambda e: e.tenant == tenant)
    assert [e.id for e in seen] == [kept.id]

    await eventually(lambda: _equals(toy.applied(tenant), 1))
    duplicates = toy.duplicates()
    count = await republish(toy.runtime.engine, toy.runtime.outbox_table, datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))
    assert count == 1
    again = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda s: len(s) >= 2, match=lambda e: e.tenant == tenant)
    assert [e.id for e in again] == [kept.id, kept.id]
    # The consumer read the republished copy and skipped it through the inbox.
    await eventually(lambda: toy.duplicates() == duplicates + 1, "the republished copy read and skipped")
    assert await toy.applied(tenant) == 1  # the consumer applied the republished event once
    assert await toy.inbox([kept.id]) == {kept.id: "applied"}


async def test_trace_context_rides_in_the_event_headers(toy: Toy, kafka_bootstrap: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with trace.get_tracer("test").start_as_current_span("post usage") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        async with toy.runtime.transaction() as session:
            await toy.runtime.outbox.add(session, toy.runtime.event(customer(tenant), tenant=tenant))
    seen = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda s: len(s) >= 1, match=lambda e: e.tenant == tenant)
    assert seen[0].traceparent is not None
    assert seen[0].traceparent.split("-")[1] == trace_id


async def test_a_restarted_consumer_applies_what_was_published_while_it_was_down(toy: Toy, producer: AIOKafkaProducer, own_consumer_groups: str) -> None:
    # The consumer group is this test's own and starts at the end of each topic; on its first
    # assignment it commits where every partition starts, so nothing sent while it is down is skipped.
    assert toy.runtime.consumer is not None and toy.runtime.consumer.group_id == f"{own_consumer_groups}{toy.runtime.name}"
    await toy.runtime.stop()
    tenants = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(6)]  # keyed by account, so spread over partitions
    for tenant in tenants:
        await send(producer, new_event(customer(tenant), source="test", tenant=tenant))

    restarted = ServiceRuntime(toy.runtime.name, toy.runtime.settings, toy.metadata)
    restarted.on(CustomerUpserted, toy.count)
    toy.runtime = restarted
    await restarted.start()
    await restarted.wait_consuming()
    for tenant in tenants:
        await eventually(_applied_once(toy, tenant))


async def test_a_stopping_consumer_finishes_and_leaves_without_being_cancelled(toy: Toy, producer: AIOKafkaProducer) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    await send(producer, new_event(customer(tenant), source="test", tenant=tenant))
    await eventually(lambda: _equals(toy.applied(tenant), 1))
    consumer = toy.runtime.consumer
    assert consumer is not None
    [task] = [t for t in toy.runtime._tasks if t.get_name().endswith("-consumer")]
    consumer.request_stop()
    await asyncio.wait_for(asyncio.shield(task), timeout=15.0)
    assert task.done() and not task.cancelled() and task.exception() is None
