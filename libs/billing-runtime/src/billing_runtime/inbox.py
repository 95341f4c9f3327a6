"""Idempotent inbox consumer: each event is applied at most once, in the same transaction as
the record that it was applied. A redelivered or replayed event changes nothing.

A message that cannot be applied (not valid, or its handler keeps failing) goes to the
dead-letter topic with the error and is recorded here; the partition moves on. Infrastructure
failures (database or broker down) are retried without end instead: they are not the event's fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_events import CloudEvent, EnvelopeError, EventData, attributes_from_headers, from_kafka
from billing_events.topics import DEAD_LETTER
from billing_runtime.tracing import context_from_traceparent

log = logging.getLogger(__name__)
tracer = trace.get_tracer("billing_runtime.inbox")

EVENTS_APPLIED = Counter("billing_events_applied_total", "Events applied by a consumer", ["service", "type"])
EVENTS_DUPLICATE = Counter("billing_events_duplicate_total", "Events already applied, skipped", ["service", "type"])
EVENTS_DEAD_LETTERED = Counter("billing_events_dead_lettered_total", "Events sent to the dead-letter topic", ["service", "type"])
CONSUMER_LAG = Gauge("billing_consumer_lag", "Messages behind the partition end", ["service", "topic", "partition"])
CONSUMER_PARTITIONS = Gauge("billing_consumer_assigned_partitions", "Partitions assigned to this consumer at its last rebalance", ["service"])
CONSUMER_REBALANCES = Counter("billing_consumer_rebalances_total", "Partition assignments this consumer received", ["service"])

Handler = Callable[[AsyncSession, CloudEvent[Any]], Awaitable[None]]


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("event_id", String, primary_key=True),
        Column("event_type", String, nullable=False),
        Column("topic", String, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", Integer, nullable=False),
        Column("status", String, nullable=False, server_default="applied"),
        Column("error", Text, nullable=True),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True)
class Route:
    model: type[EventData]
    handler: Handler


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return False


class InboxConsumer:
    def __init__(
        self,
        *,
        service: str,
        bootstrap_servers: str,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        producer: AIOKafkaProducer,
        routes: dict[str, Route],
        max_attempts: int = 3,
        session_timeout_ms: int = 10000,
        group_id: str | None = None,
        auto_offset_reset: str = "earliest",
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.bootstrap_servers = bootstrap_servers
        self.sessions = sessions
        self.table = table
        self.producer = producer
        self.routes = routes
        self.max_attempts = max_attempts
        self.session_timeout_ms = session_timeout_ms
        self.group_id = group_id or service
        self.auto_offset_reset = auto_offset_reset
        self.after_commit = after_commit
        self.topics = sorted({route.model.topic.name for route in routes.values()})
        self.ready = asyncio.Event()
        """Set once the consumer has been through its first assignment and knows where each of its
        partitions starts: from then on nothing published is missed, even with `latest`."""
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def request_stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group and return from `run`."""
        self._stopping.set()

    async def run(self) -> None:
        from billing_runtime.kafka import start_with_retry

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.service}-consumer",
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=500,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(self.session_timeout_ms // 4, 250),
        )
        self._consumer = consumer
        await start_with_retry(consumer)
        consumer.subscribe(self.topics, listener=_Positions(self, consumer))
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, messages in batches.items():
                    if self._stopping.is_set():
                        break
                    known = await self._already_recorded(messages)
                    for message in messages:
                        key = _inbox_key(message)
                        if key in known:
                            EVENTS_DUPLICATE.labels(self.service, _event_type(message)).inc()
                            continue
                        await self.handle(message)
                    await consumer.commit({tp: messages[-1].offset + 1})
                    self._record_lag(consumer, tp, messages[-1].offset)
        finally:
            await consumer.stop()

    async def _already_recorded(self, messages: list[ConsumerRecord[bytes, bytes]]) -> set[str]:
        """The inbox keys of `messages` applied or dead-lettered before: one query per polled batch,
        so a replay after a rebalance or a restart costs little."""
        keys = [_inbox_key(m) for m in messages]
        async with self.sessions() as session:
            rows = await session.execute(select(self.table.c.event_id).where(self.table.c.event_id.in_(keys)))
            return {row[0] for row in rows}

    def _record_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, last_offset: int) -> None:
        highwater = consumer.highwater(tp)
        if highwater is not None:
            CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(highwater - last_offset - 1, 0))

    async def handle(self, message: ConsumerRecord[bytes, bytes]) -> None:
        headers = list(message.headers or [])
        event_type = attributes_from_headers(headers).get("type", "")
        route = self.routes.get(event_type)
        if route is None:
            return  # another service's business on a shared topic
        try:
            event = from_kafka(headers, message.value or b"", route.model)
        except EnvelopeError as exc:
            await self._dead_letter(message, event_type, _event_id(headers), str(exc))
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await self._apply(message, event, route)
                if applied:
                    EVENTS_APPLIED.labels(self.service, event_type).inc()
                    if self.after_commit:
                        self.after_commit()
                else:
                    EVENTS_DUPLICATE.labels(self.service, event_type).inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _is_transient(exc):
                    log.warning("transient failure applying %s %s: %s; retrying", event_type, event.id, exc)
                    await asyncio.sleep(min(5.0, 0.5 * attempt))
                    continue
                if attempt >= self.max_attempts:
                    log.exception("dead-lettering %s %s after %d attempts", event_type, event.id, attempt)
                    await self._dead_letter(message, event_type, event.id, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(0.1 * attempt)

    async def _apply(self, message: ConsumerRecord[bytes, bytes], event: CloudEvent[Any], route: Route) -> bool:
        parent = context_from_traceparent(event.traceparent)
        with tracer.start_as_current_span(
            f"consume {event.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": message.topic,
                "messaging.message.id": event.id,
                "billing.service": self.service,
            },
        ):
            async with self.sessions() as session, session.begin():
                inserted = await session.execute(
                    pg_insert(self.table)
                    .values(
                        event_id=event.id,
                        event_type=event.type,
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                    )
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(self.table.c.event_id)
                )
                if inserted.first() is None:
                    return False
                await route.handler(session, event)
            return True

    async def _dead_letter(self, message: ConsumerRecord[bytes, bytes], event_type: str, event_id: str | None, error: str) -> None:
        headers = list(message.headers or []) + [
            ("dlq_service", self.service.encode()),
            ("dlq_topic", message.topic.encode()),
            ("dlq_partition", str(message.partition).encode()),
            ("dlq_offset", str(message.offset).encode()),
            ("dlq_error", error[:4000].encode()),
        ]
        # Recorded in the inbox as well, in the same transaction as the hand-over to the
        # dead-letter topic, so a replay of the same poison event is not dead-lettered twice.
        key = event_id or _position_key(message)
        async with self.sessions() as session, session.begin():
            recorded = await session.execute(
                pg_insert(self.table)
                .values(
                    event_id=key,
                    event_type=event_type or "unknown",
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    status="dead_lettered",
                    error=error[:4000],
                )
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(self.table.c.event_id)
            )
            if recorded.first() is None:
                return
            await self.producer.send_and_wait(DEAD_LETTER.name, value=message.value, key=message.key, headers=headers)
        EVENTS_DEAD_LETTERED.labels(self.service, event_type or "unknown").inc()


def _event_id(headers: list[tuple[str, bytes]]) -> str | None:
    return attributes_from_headers(headers).get("id")


def _event_type(message: ConsumerRecord[bytes, bytes]) -> str:
    return attributes_from_headers(list(message.headers or [])).get("type", "") or "unknown"


def _position_key(message: ConsumerRecord[bytes, bytes]) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"


def _inbox_key(message: ConsumerRecord[bytes, bytes]) -> str:
    """The key a message is recorded under in the inbox: its event id, or where it sits if it has none."""
    return _event_id(list(message.headers or [])) or _position_key(message)


class _Positions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On each assignment: resolve where every assigned partition starts (the committed offset, or
    the reset policy's end of the log) and commit it, so a restart in the same group starts there
    too. The first time, `ready` is set."""

    def __init__(self, inbox: InboxConsumer, consumer: AIOKafkaConsumer) -> None:
        self.inbox = inbox
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        CONSUMER_REBALANCES.labels(self.inbox.service).inc()
        CONSUMER_PARTITIONS.labels(self.inbox.service).set(len(assigned))
        if assigned:
            positions = {tp: await self.consumer.position(tp) for tp in assigned}
            await self.consumer.commit(positions)
        log.info("%s consumer (group %s) assigned %d partitions", self.inbox.service, self.inbox.group_id, len(assigned))
        self.inbox.ready.set()
