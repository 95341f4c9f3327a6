"""Transactional outbox: events are written in the same transaction as the state change that
implies them, and a relay publishes them to Kafka afterwards and marks them sent.

Rows stay for a retention window after they are sent, so a lost topic (a broker that kept
nothing) can be healed by `republish(since, until)`.

Where the relay finds the unsent rows: by default the partial index `ix_outbox_unsent` (`sent_at IS
NULL`). A service that declares `outbox_table(metadata, pending=True)` keeps them in a narrow
side table instead, `outbox_pending` (the unsent rows' ids): the writer adds the id in the same
statement as the row, the relay deletes it in the same statement that sets `sent_at`. `sent_at` is
then in no index, so marking a row sent is a HOT update in place (the table has fillfactor 50 for
the room): no new index entries and a WAL record of some 150 bytes instead of a second copy of the
row (about 1.2 kB). Measured on usage-ingest's rows, 50,000 events: the outbox's WAL per event
2.4 kB to 1.5 kB. Everything else reads the outbox as before (`sent_at`, one row per event).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind
from prometheus_client import Counter, Gauge, Histogram
from pydantic_core import from_json, to_json
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    event,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from billing_events import CloudEvent, to_kafka
from billing_events.envelope import BATCH_SIZE_HEADER, batch_headers, header_texts, structured_json
from billing_runtime.tasks import keep_running
from billing_runtime.tracing import context_from_traceparent, current_traceparent, traced, tracing_enabled

log = logging.getLogger(__name__)

# A produce span the relay opened for one (topic, carried trace), and the headers naming it.
_Produce = tuple[Span, list[tuple[str, bytes]]]
tracer = trace.get_tracer("billing_runtime.outbox")

EVENTS_PUBLISHED = Counter("billing_outbox_events_published_total", "Events published to Kafka (a batch row counts its events)", ["service", "topic"])
MESSAGES_PUBLISHED = Counter("billing_outbox_messages_published_total", "Outbox rows (Kafka messages) published", ["service", "topic"])
EVENTS_PER_MESSAGE = Histogram(
    "billing_outbox_events_per_message",
    "Events in one published Kafka message (1, or the size of a batch message)",
    ["service", "topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)

# A batch row (`Outbox.add_batched`): at most this many events and bytes of value, well below the
# producer's `max_request_size` and the brokers' message limit (1 MiB each by default) and below
# a consumer's CONSUMER_MAX_BATCH_BYTES (1 MiB), which applies a message whole.
BATCH_MAX_EVENTS = 1000
BATCH_MAX_BYTES = 256 * 1024
OUTBOX_BACKLOG = Gauge("billing_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PURGED = Counter("billing_outbox_rows_purged_total", "Sent outbox rows deleted after the retention window", ["service"])
RELAY_WAKES = Counter("billing_outbox_relay_wakes_total", "Commits that wrote outbox rows and woke the relay", ["service"])

# Set in a session's `info` by `Outbox.add`; the session class of `outbox_session_class` wakes
# the relay when a transaction that set it commits.
_WROTE_OUTBOX = "billing_runtime.outbox.wrote"


PENDING_TABLE = "outbox_pending"
PENDING_FILLFACTOR = 50


def outbox_table(metadata: MetaData, *, pending: bool = False) -> Table:
    """The outbox; `pending`: with its `outbox_pending` side table (see the module docstring) in
    place of the partial index of unsent rows. A migration of either shape: `add_pending_sql`."""
    if pending:
        Table(PENDING_TABLE, metadata, Column("id", BigInteger, primary_key=True, autoincrement=False))
    unsent: tuple[Index, ...] = () if pending else (Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),)
    options: dict[str, Any] = {"postgresql_with": {"fillfactor": PENDING_FILLFACTOR}} if pending else {}
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", String, nullable=False, unique=True),
        Column("event_type", String, nullable=False),
        Column("topic", String, nullable=False),
        Column("key", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        *unsent,
        Index("ix_outbox_created_at", "created_at"),
        # Room on each page for the row's version marked sent (a HOT update) when `pending`.
        **options,
    )


def pending_of(table: Table) -> Table | None:
    """The outbox's `outbox_pending` table when its service declared one (same metadata)."""
    return table.metadata.tables.get(f"{table.schema}.{PENDING_TABLE}" if table.schema else PENDING_TABLE)


def add_pending_sql(schema: str) -> list[str]:
    """For a service's migration to the `pending` shape: the side table, filled with the rows not
    sent yet, the partial index dropped, the fillfactor set (new pages; old ones as they were)."""
    return [
        f'CREATE TABLE "{schema}".{PENDING_TABLE} (id BIGINT NOT NULL, CONSTRAINT pk_{PENDING_TABLE} PRIMARY KEY (id))',
        f'INSERT INTO "{schema}".{PENDING_TABLE} (id) SELECT id FROM "{schema}".outbox WHERE sent_at IS NULL',
        f'DROP INDEX IF EXISTS "{schema}".ix_outbox_unsent',
        f'ALTER TABLE "{schema}".outbox SET (fillfactor = {PENDING_FILLFACTOR})',
    ]


def drop_pending_sql(schema: str) -> list[str]:
    """The way back: the partial index again, the side table dropped (its rows are `sent_at IS NULL`)."""
    return [
        f'CREATE INDEX ix_outbox_unsent ON "{schema}".outbox (id) WHERE sent_at IS NULL',
        f'ALTER TABLE "{schema}".outbox RESET (fillfactor)',
        f'DROP TABLE "{schema}".{PENDING_TABLE}',
    ]


def _row(event: CloudEvent[Any]) -> dict[str, Any]:
    event = traced(event)
    message = to_kafka(event)
    return {
        "event_id": event.id,
        "event_type": event.type,
        "topic": message.topic,
        "key": message.key,
        "headers": [[name, value.decode()] for name, value in message.headers],
        "value": message.value,
    }


class Outbox:
    """Writes events into a service's outbox table inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.pending = pending_of(table)
        self._insert_many: TextClause | None = None

    async def add(self, session: AsyncSession | AsyncConnection, *events: CloudEvent[Any]) -> None:
        if not events:
            return
        if self.pending is not None:  # the row and its pending id in one statement: add_many's
            await self.add_many(session, events)
            return
        # Same event id twice (a re-derived event) is written once: the first one stands.
        # Rows go as executemany parameters: one cached statement, not a 500-row VALUES to compile.
        stmt = pg_insert(self.table).on_conflict_do_nothing(index_elements=["event_id"])
        await session.execute(stmt, [_row(e) for e in events])
        if isinstance(session, AsyncSession):
            session.info[_WROTE_OUTBOX] = True

    async def add_many(self, session: AsyncSession | AsyncConnection, events: Sequence[CloudEvent[Any]]) -> None:
        """`add` for a batch: one `INSERT … SELECT FROM unnest(…)` statement whatever the number of
        events, in the order given (the relay publishes in id order). Same rows as `add` writes."""
        if not events:
            return
        traceparent = current_traceparent()  # one request, one trace: looked up once for the batch
        rows = []
        for cloud_event in events:
            # What to_kafka makes of the event, without building (and validating) its message.
            headers = header_texts(cloud_event)
            if cloud_event.traceparent is None and traceparent is not None:
                headers.append(("traceparent", traceparent))  # where to_kafka puts it
            data = cloud_event.data
            key = data.partition_key().encode()
            rows.append((cloud_event.id, cloud_event.type, data.topic.name, key, to_json(headers).decode(), data.model_dump_json().encode()))
        await self._insert_rows(session, rows, len(events))

    async def add_batched(
        self,
        session: AsyncSession | AsyncConnection,
        events: Sequence[CloudEvent[Any]],
        *,
        max_events: int = BATCH_MAX_EVENTS,
        max_bytes: int = BATCH_MAX_BYTES,
    ) -> None:
        """`add_many` in batched content mode: one row (one Kafka message, `to_kafka_batch`'s) per
        (topic, tenant, partition key) and run of at most `max_events` events of one type and
        `max_bytes` of value, in the order given within each key, so an account's events keep
        their order on its partition. The row's `event_id` is its first event's; its headers carry the batch size
        (the relay counts events by it) and the request's `traceparent` (each event carries its own
        inside). A consumer of `billing_runtime.inbox` applies the events one by one."""
        if not events:
            return
        traceparent = current_traceparent()
        by_key: dict[tuple[str, str, str], list[tuple[CloudEvent[Any], bytes]]] = {}
        for cloud_event in events:
            data = cloud_event.data
            group = by_key.setdefault((data.topic.name, cloud_event.tenant, data.partition_key()), [])
            group.append((cloud_event, structured_json(cloud_event, traceparent=traceparent)))
        rows = []
        for (topic, tenant, key), members in by_key.items():
            chunk: list[tuple[CloudEvent[Any], bytes]] = []
            size = 0
            for member in [*members, None]:
                full = member is None or len(chunk) >= max_events or size + len(member[1]) + 1 > max_bytes
                if chunk and (full or (member is not None and member[0].type != chunk[0][0].type)):  # a row is of one event type
                    headers = batch_headers(tenant, len(chunk))
                    if traceparent is not None:
                        headers.append(("traceparent", traceparent))
                    first = chunk[0][0]
                    value = b"[" + b",".join(doc for _, doc in chunk) + b"]"
                    rows.append((first.id, first.type, topic, key.encode(), to_json(headers).decode(), value))
                    chunk, size = [], 0
                if member is not None:
                    chunk.append(member)
                    size += len(member[1]) + 1
        await self._insert_rows(session, rows, len(events))

    async def _insert_rows(self, session: AsyncSession | AsyncConnection, rows: list[tuple[Any, ...]], n_events: int) -> None:
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        if self._insert_many is None:
            t = self.table
            insert = (
                f'INSERT INTO "{t.schema}"."{t.name}" (event_id, event_type, topic, key, headers, value) '
                "SELECT e.event_id, e.event_type, e.topic, e.key, e.headers, e.value "
                "FROM unnest(CAST(:event_id AS text[]), CAST(:event_type AS text[]), CAST(:topic AS text[]), CAST(:key AS bytea[]), "
                "CAST(:headers AS jsonb[]), CAST(:value AS bytea[])) WITH ORDINALITY AS e(event_id, event_type, topic, key, headers, value, n) "
                "ORDER BY e.n ON CONFLICT (event_id) DO NOTHING"
            )
            if self.pending is not None:
                # The ids of the rows written (not of those already there) are the pending ones.
                p = self.pending
                insert = f'WITH written AS ({insert} RETURNING id) INSERT INTO "{p.schema}"."{p.name}" (id) SELECT id FROM written'
            self._insert_many = text(insert)
        names = ("event_id", "event_type", "topic", "key", "headers", "value")
        attributes = {"messaging.batch.message_count": len(rows), "billing.events": n_events}
        with tracer.start_as_current_span("outbox add_many", attributes=attributes):
            await session.execute(self._insert_many, dict(zip(names, columns, strict=True)))
        if isinstance(session, AsyncSession):
            session.info[_WROTE_OUTBOX] = True


def outbox_session_class(service: str, wake: Callable[[], None]) -> type[Session]:
    """A session class whose commits wake the relay, only when the transaction wrote outbox rows
    (`Outbox.add` marks it): commits that wrote none cost the relay nothing."""

    def committed(session: Session) -> None:
        if session.info.pop(_WROTE_OUTBOX, False):
            RELAY_WAKES.labels(service).inc()
            wake()

    def rolled_back(session: Session) -> None:
        session.info.pop(_WROTE_OUTBOX, None)

    cls = type(f"OutboxSession[{service}]", (Session,), {})
    event.listen(cls, "after_commit", committed)
    event.listen(cls, "after_rollback", rolled_back)
    return cls


class OutboxRelay:
    """Publishes unsent outbox rows in id order and marks them sent.

    One relay per service publishes at a time, which keeps the per-key order of the outbox on the
    topic even with several replicas: each batch is read, sent and marked under a transaction-level
    advisory lock (`pg_try_advisory_xact_lock`), released by the batch's commit. No transaction
    stays open between polls (an idle one would pin the xmin horizon, so VACUUM could not remove
    the rows marked sent and later purged, and every poll would wade through them); an idle poll
    is one autocommit query on the partial index of unsent rows (or on `outbox_pending`, when the
    service declared it: then marking a batch sent is one statement that deletes its pending ids
    and sets its rows' `sent_at`).
    """

    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        table: Table,
        producer: AIOKafkaProducer,
        poll_interval: float = 0.05,
        batch_size: int = 1000,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.service = service
        self.engine = engine
        self.table = table
        self.producer = producer
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.retention = retention
        self._wake = asyncio.Event()
        self._lock_key = _advisory_key(f"outbox:{service}")
        self._last_purge = float("-inf")
        t = table
        # The headers as the text of their JSON, parsed here in one Rust call each: the driver's
        # JSONB codec (the standard library's json) was 7% of usage-ingest's CPU (bench/ingest.py).
        headers = cast(t.c.headers, Text).label("headers")
        columns = (t.c.id, t.c.topic, t.c.key, headers, t.c.value)
        ids = bindparam("ids", type_=ARRAY(BigInteger))
        self.pending = p = pending_of(table)
        self._unsent_by = "partial_index" if p is None else PENDING_TABLE  # on the publish span
        if p is None:
            self._any_unsent = select(exists().where(t.c.sent_at.is_(None)))
            self._unsent = select(*columns).where(t.c.sent_at.is_(None)).order_by(t.c.id).limit(batch_size)
            self._mark_sent: Any = update(t).where(t.c.id == any_(ids)).values(sent_at=func.now())
            self._count_unsent = select(func.count()).select_from(t).where(t.c.sent_at.is_(None))
        else:
            self._any_unsent = select(exists().select_from(p))
            self._unsent = select(*columns).select_from(p.join(t, t.c.id == p.c.id)).order_by(p.c.id).limit(batch_size)
            # One statement: the ids leave the pending table and their rows get `sent_at` (HOT).
            self._mark_sent = text(
                f'WITH sent AS (DELETE FROM "{p.schema}"."{p.name}" WHERE id = ANY(:ids) RETURNING id) '
                f'UPDATE "{t.schema}"."{t.name}" SET sent_at = now() WHERE id IN (SELECT id FROM sent)'
            ).bindparams(ids)
            self._count_unsent = select(func.count()).select_from(p)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await keep_running(self._loop, f"outbox relay of {self.service}")

    async def _loop(self) -> None:
        while True:
            sent = await self.publish_batch()
            if sent is None:  # another replica's relay is publishing
                await self._sleep(1.0)
            elif sent < self.batch_size:
                if sent == 0:
                    await self._purge_if_due()
                await self._sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def publish_batch(self) -> int | None:
        """Publish one batch: the number of rows sent, or None if another relay holds the lock."""
        async with self.engine.connect() as probe:
            await probe.execution_options(isolation_level="AUTOCOMMIT")
            if not await probe.scalar(self._any_unsent):
                OUTBOX_BACKLOG.labels(self.service).set(0)
                return 0
        async with self.engine.begin() as conn:
            if not await conn.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key))):
                return None
            rows = (await conn.execute(self._unsent)).all()
            if not rows:
                OUTBOX_BACKLOG.labels(self.service).set(0)
                return 0
            attributes: dict[str, str | int] = {
                "billing.service": self.service,
                "messaging.batch.message_count": len(rows),
                "billing.outbox.unsent": self._unsent_by,
            }
            with tracer.start_as_current_span("outbox publish", attributes=attributes):
                futures, produce_spans, events = await self._send(rows)
                try:
                    await asyncio.gather(*futures)
                finally:
                    for span, _ in produce_spans.values():
                        span.end()
            await conn.execute(self._mark_sent, {"ids": [r.id for r in rows]})
            for topic, n in Tally(row.topic for row in rows).items():
                MESSAGES_PUBLISHED.labels(self.service, topic).inc(n)
            for (topic, size), n in events.items():
                EVENTS_PUBLISHED.labels(self.service, topic).inc(size * n)
                per_message = EVENTS_PER_MESSAGE.labels(self.service, topic)
                for _ in range(n):
                    per_message.observe(size)
            # A short batch took everything unsent; only after a full one is there a backlog to count.
            backlog = 0
            if len(rows) == self.batch_size:
                backlog = await conn.scalar(self._count_unsent) or 0
            OUTBOX_BACKLOG.labels(self.service).set(backlog)
            return len(rows)

    async def _send(self, rows: Sequence[Any]) -> tuple[list[asyncio.Future[Any]], dict[tuple[str, str], _Produce], Tally[tuple[str, int]]]:
        """Queue the rows' messages in the producer, in id order per partition: one record batch
        per (topic, partition) filled here (`create_batch`, `send_batch`), not one `send` per
        message, whose per-message accumulator path was 40% of the relay's CPU (bench/ingest.py).
        The partition is the one `send` would choose (the producer's own partitioner), so an
        account's events keep their partition and order; a full batch is submitted before the
        next one for its partition is started. The futures resolve when the broker has them.

        Tracing: a row carries the `traceparent` of the request that wrote it. Per (topic, carried
        trace) the relay opens one PRODUCER span `<topic> send`, a child of that request, and the
        messages carry the produce span's own `traceparent` instead, so the consumers' spans
        descend from the produce (what the aiokafka instrumentation does for `send`, done here
        once per request's batch rather than once per message). A batch row's events keep their
        own request's `traceparent` inside its value.

        Also answered: the number of messages per (topic, events in the message)."""
        producer = self.producer
        events: Tally[tuple[str, int]] = Tally()
        produce_spans: dict[tuple[str, str], _Produce] = {}
        open_batches: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        for row in rows:
            topic = row.topic
            known = partitions.get(topic)
            if known is None:
                await producer.partitions_for(topic)  # the topic's metadata, as `send` waits for it
                # What `send` hands the partitioner (its `_partition`), listed once per topic, not per message.
                metadata = producer._metadata
                known = partitions[topic] = (list(metadata.partitions_for_topic(topic)), list(metadata.available_partitions_for_topic(topic)))
            partition = producer._partitioner(row.key, *known)
            texts = from_json(row.headers)
            size = 1
            for name, value in texts:
                if name == BATCH_SIZE_HEADER:
                    size = int(value)
            events[(topic, size)] += 1
            headers = [(name, value.encode()) for name, value in texts]
            if tracing_enabled():
                headers = self._traced(topic, headers, produce_spans)
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=row.key, value=row.value, timestamp=None, headers=headers) is None:  # full
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = open_batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=row.key, value=row.value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"outbox row {row.id} does not fit in a record batch of the producer")
        for (topic, partition), batch in open_batches.items():
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures, produce_spans, events

    def _traced(self, topic: str, headers: list[tuple[str, bytes]], spans: dict[tuple[str, str], _Produce]) -> list[tuple[str, bytes]]:
        """The message's headers with its carried `traceparent` replaced by its produce span's
        (opened, and its own headers encoded, once per topic and carried trace)."""
        carried = next((value.decode() for name, value in headers if name == "traceparent" and value), None)
        if carried is None:
            return headers
        produce = spans.get((topic, carried))
        if produce is None:
            span = tracer.start_span(
                f"{topic} send",
                context=context_from_traceparent(carried),
                kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "kafka", "messaging.destination.name": topic, "billing.service": self.service},
            )
            own: dict[str, str] = {}
            propagate.inject(own, context=trace.set_span_in_context(span))
            produce = spans[(topic, carried)] = (span, [(k, v.encode()) for k, v in own.items()])
        return [(name, value) for name, value in headers if name not in ("traceparent", "tracestate")] + produce[1]

    async def _purge_if_due(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_purge < 60:
            return
        self._last_purge = loop.time()
        await self.purge()

    async def purge(self) -> int:
        """Delete the rows sent longer than the retention window ago; the number deleted."""
        t = self.table
        cutoff = func.now() - self.retention
        async with self.engine.begin() as conn:
            # `created_at` (indexed, never after `sent_at`) narrows the scan to old rows.
            result = await conn.execute(delete(t).where(t.c.created_at < cutoff, t.c.sent_at.is_not(None), t.c.sent_at < cutoff))
        purged = result.rowcount or 0
        if purged:
            OUTBOX_PURGED.labels(self.service).inc(purged)
        return purged


async def republish(engine: AsyncEngine, table: Table, since: datetime, until: datetime) -> int:
    """Mark the rows created in [since, until) unsent, so the relay publishes them again.
    Consumers drop the duplicates through their inbox."""
    t = table
    window = (t.c.created_at >= since, t.c.created_at < until)
    async with engine.begin() as conn:
        p = pending_of(t)
        if p is None:
            result = await conn.execute(update(t).where(*window).values(sent_at=None))
            return result.rowcount or 0
        ids = [r[0] for r in await conn.execute(update(t).where(*window).values(sent_at=None).returning(t.c.id))]
        if ids:
            pending = text(f'INSERT INTO "{p.schema}"."{p.name}" (id) SELECT unnest(CAST(:ids AS bigint[])) ON CONFLICT DO NOTHING')
            await conn.execute(pending, {"ids": ids})
        return len(ids)


def _advisory_key(name: str) -> int:
    return zlib.crc32(name.encode())
