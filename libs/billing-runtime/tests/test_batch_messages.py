"""Messages in batched content mode (`billing_events.to_kafka_batch`) through the runtime's own
dispatch (`InboxConsumer.apply_batch`): each event of a batch applied once and in order, a batch
delivered twice changes nothing, a poison event in a batch dead-lettered alone while its siblings
apply, single and batch messages mixed on one partition in their order. Real PostgreSQL; the
records are built as the broker hands them (no broker is started here)."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from sqlalchemy import Column, Identity, Integer, String, Table, insert, select, text

from billing_events import CloudEvent, CustomerUpserted, KafkaMessage, account_id, to_kafka, to_kafka_batch
from billing_events.testing import make_event
from billing_events.topics import CUSTOMERS
from billing_runtime.config import CommonSettings
from billing_runtime.db import schema_metadata
from billing_runtime.errors import BillingError
from billing_runtime.service import ServiceRuntime, runtime_tables
from billing_runtime.testing import _DeadLetterSink, record_of


class Unwelcome(BillingError):
    code = "customer_unwelcome"


class Toy:
    """A throwaway service that records, in order, the CustomerUpserted events it applies, and
    refuses a customer named "Mallory" with a coded error."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.sink = _DeadLetterSink()
        self.offsets = itertools.count()
        self.tp = TopicPartition(CUSTOMERS.name, 0)

    async def feed(self, *messages: KafkaMessage) -> None:
        """The messages as one polled batch of one partition, at the next offsets."""
        records = [record_of(m, self.tp, next(self.offsets)) for m in messages]
        await self.runtime.inbox_consumer(producer=self.sink).apply_batch(self.tp, records)  # the sink stands in for the producer

    async def applied(self) -> list[str]:
        """The event ids applied (committed), in the order they were applied."""
        table = self.runtime.metadata.tables[f"{self.runtime.metadata.schema}.applied"]
        async with self.runtime.engine.connect() as conn:
            return [r[0] for r in await conn.execute(select(table.c.event_id).order_by(table.c.n))]

    async def inbox(self, ids: list[str]) -> dict[str, tuple[str, str | None]]:
        table = self.runtime.inbox_table
        async with self.runtime.engine.connect() as conn:
            rows = await conn.execute(select(table.c.event_id, table.c.status, table.c.error_code).where(table.c.event_id.in_(ids)))
            return {event_id: (status, code) for event_id, status, code in rows}


@pytest.fixture
async def toy(database_url: str) -> Any:
    schema = f"toy_{uuid.uuid4().hex[:8]}"
    metadata = schema_metadata(schema)
    runtime_tables(metadata)
    applied = Table("applied", metadata, Column("n", Integer, Identity(), primary_key=True), Column("event_id", String, nullable=False))
    runtime = ServiceRuntime(f"toy-{schema}", CommonSettings(database_url=database_url, consumer_max_attempts=2), metadata)
    service = Toy(runtime)

    async def apply(session: Any, event: CloudEvent[Any]) -> None:
        if event.data.name == "Mallory":
            raise Unwelcome("Mallory is not welcome")
        await session.execute(insert(applied).values(event_id=event.id))

    runtime.on(CustomerUpserted, apply)
    async with runtime.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield service
    async with runtime.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await runtime.engine.dispose()


def customers(tenant: str, n: int, *, names: dict[int, str] | None = None) -> list[CloudEvent[CustomerUpserted]]:
    """`n` events of one account (one partition key, so they can share a batch message)."""
    account = account_id(tenant, "c1")
    return [
        make_event(
            CustomerUpserted, tenant=tenant, subject=account, account_id=account, partner_id=tenant, external_id="c1", name=(names or {}).get(i, f"n{i}")
        )
        for i in range(n)
    ]


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:6]}"


async def test_a_batch_message_applies_each_event_once_and_again_nothing(toy: Toy) -> None:
    events = customers(tenant(), 5)
    await toy.feed(to_kafka_batch(events))
    assert await toy.applied() == [e.id for e in events]
    assert await toy.inbox([e.id for e in events]) == {e.id: ("applied", None) for e in events}
    # The same batch delivered again (a redelivery, or the outbox republished): nothing applies.
    await toy.feed(to_kafka_batch(events))
    # One of its events posted later on its own (same id): still a duplicate.
    await toy.feed(to_kafka(events[2]))
    assert await toy.applied() == [e.id for e in events] and toy.sink.letters == []


async def test_a_poison_event_in_a_batch_is_dead_lettered_alone_with_its_code(toy: Toy) -> None:
    events = customers(tenant(), 5, names={2: "Mallory"})
    bad = events[2]
    await toy.feed(to_kafka_batch(events))
    assert await toy.applied() == [e.id for e in events if e is not bad]
    statuses = await toy.inbox([e.id for e in events])
    assert statuses[bad.id] == ("dead_lettered", "customer_unwelcome")
    assert all(statuses[e.id] == ("applied", None) for e in events if e is not bad)
    # The dead letter is that one event, as a binary-mode message of its own.
    [letter] = toy.sink.letters
    assert letter.event_id == bad.id and letter.code == "customer_unwelcome"
    assert letter.headers["ce_type"] == CustomerUpserted.event_type and letter.headers["dlq_batch_index"] == "2"
    assert letter.headers["content-type"] == "application/json"


async def test_an_invalid_element_of_a_batch_is_dead_lettered_alone_as_invalid(toy: Toy) -> None:
    events = customers(tenant(), 3)
    message = to_kafka_batch(events)
    elements = json.loads(message.value)
    del elements[1]["data"]["currency"]  # a required field
    broken = KafkaMessage(topic=message.topic, key=message.key, headers=message.headers, value=json.dumps(elements).encode())
    await toy.feed(broken)
    assert await toy.applied() == [events[0].id, events[2].id]
    assert (await toy.inbox([events[1].id]))[events[1].id] == ("dead_lettered", "invalid_event")
    [letter] = toy.sink.letters
    assert letter.event_id == events[1].id and letter.code == "invalid_event" and letter.headers["dlq_batch_index"] == "1"


async def test_a_batch_message_that_is_not_an_array_is_dead_lettered_whole(toy: Toy) -> None:
    events = customers(tenant(), 2)
    message = to_kafka_batch(events)
    await toy.feed(KafkaMessage(topic=message.topic, key=message.key, headers=message.headers, value=b'{"not": "an array"}'))
    assert await toy.applied() == []
    [letter] = toy.sink.letters
    assert letter.code == "invalid_event" and letter.headers["content-type"] == "application/cloudevents-batch+json"


async def test_single_and_batch_messages_on_one_partition_keep_their_order(toy: Toy) -> None:
    events = customers(tenant(), 9)
    messages = [to_kafka(events[0]), to_kafka_batch(events[1:4]), to_kafka(events[4]), to_kafka_batch(events[5:8]), to_kafka(events[8])]
    await toy.feed(*messages)
    assert await toy.applied() == [e.id for e in events]
    # The next poll: a batch that repeats an applied event next to new ones applies only the new.
    later = customers(events[0].tenant, 2)
    await toy.feed(to_kafka_batch([events[8], *later]))
    assert await toy.applied() == [e.id for e in [*events, *later]]
