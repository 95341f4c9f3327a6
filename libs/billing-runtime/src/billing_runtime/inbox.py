"""Idempotent inbox consumer: each event is applied at most once, in the same transaction as
the record that it was applied. A redelivered or replayed event changes nothing.

A message that cannot be applied (not valid, or its handler keeps failing) goes to the
dead-letter topic with the error and is recorded here; the partition moves on. Infrastructure
failures (database or broker down) are retried without end instead: they are not the event's fault.

A message in batched content mode (`billing_events.to_kafka_batch`: a JSON array of structured
events, as usage-ingest publishes usage) is unpacked here before the inbox: each of its events is
an item of the polled batch like a message of its own (deduplicated by its id, routed by its type,
applied in order, a poison one dead-lettered alone as a binary-mode message with its `dlq_*`
headers and `dlq_batch_index`). A batch message is applied whole in one transaction (the byte bound
splits a polled batch between messages, never inside one), so its offset commits as any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram
from pydantic import Json, TypeAdapter
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing_events import CloudEvent, EnvelopeError, EventData, attributes_from_headers, envelope_class, is_batch
from billing_events.envelope import batch_elements, binary_of, header_texts
from billing_events.topics import DEAD_LETTER
from billing_runtime.errors import BillingError, Unprocessable
from billing_runtime.tracing import context_from_traceparent, tracing_enabled

log = logging.getLogger(__name__)
tracer = trace.get_tracer("billing_runtime.inbox")

EVENTS_APPLIED = Counter("billing_events_applied_total", "Events applied by a consumer", ["service", "type"])
EVENTS_DUPLICATE = Counter("billing_events_duplicate_total", "Events already applied, skipped", ["service", "type"])
EVENTS_DEAD_LETTERED = Counter("billing_events_dead_lettered_total", "Events sent to the dead-letter topic", ["service", "type"])
DEAD_LETTER_CODES = Counter(
    "billing_events_dead_lettered_by_code_total", "Events sent to the dead-letter topic, by the code of their error", ["service", "code"]
)
# The broker's view (wrong on the embedded Tansu); the platform's own count is `billing_consumer_lag` (lag.py).
BROKER_LAG = Gauge(
    "billing_consumer_broker_lag", "Messages behind the partition end, as the broker reports it (wrong on Tansu)", ["service", "topic", "partition"]
)
CONSUMER_PARTITIONS = Gauge("billing_consumer_assigned_partitions", "Partitions assigned to this consumer at its last rebalance", ["service"])
CONSUMER_REBALANCES = Counter("billing_consumer_rebalances_total", "Partition assignments this consumer received", ["service"])
BATCH_SIZE = Histogram(
    "billing_consumer_batch_size",
    "Messages in one polled batch of one partition, applied in one transaction",
    ["service", "topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
BATCH_APPLY_SECONDS = Histogram(
    "billing_consumer_batch_apply_seconds",
    "Time to apply one polled batch of one partition (inbox insert, handlers, commit), retries included",
    ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_BYTES = Histogram(
    "billing_consumer_batch_bytes",
    "Bytes of message values in one applied batch (one transaction), bounded by CONSUMER_MAX_BATCH_BYTES",
    ["service", "topic"],
    buckets=(1_000, 10_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 16_000_000),
)
BATCH_SPLITS = Counter(
    "billing_consumer_batch_splits_total",
    "Polled batches of a partition applied in more than one transaction because their values passed CONSUMER_MAX_BATCH_BYTES",
    ["service", "topic"],
)
BATCH_ISOLATIONS = Counter(
    "billing_consumer_batch_isolations_total",
    "Batches whose handlers failed and were applied again with each handler call in a savepoint, to isolate the poison",
    ["service", "topic"],
)

Handler = Callable[[AsyncSession, CloudEvent[Any]], Awaitable[None]]
"""Applies one event, in the transaction of the batch it came in."""

BatchHandler = Callable[[AsyncSession, list[CloudEvent[Any]]], Awaitable[None]]
"""Applies a consecutive run of new (deduplicated) events of one type from one polled batch, in
offset order, in the batch's transaction: for set-based SQL."""

# Where a span of a batch links to the traces of its events: at most this many.
_MAX_LINKS = 64


class ForeignTenant(Unprocessable):
    """An event whose data names another tenant than its envelope (the field its model declares
    in `tenant_field`): dead-lettered by the consumer before any handler sees it."""

    code = "foreign_tenant"


# The code of a dead letter whose handler failed with an exception that carries none (a bug, or a
# constraint the database enforces): a failure the event's producer cannot act on by itself.
HANDLER_FAILED = "handler_failed"


class RejectedEvents(Exception):  # noqa: N818  (a signal, like StopIteration)
    """Raised by a batch handler that found some of its events cannot be applied (a domain rule
    refuses them): those are dead-lettered alone, each with its error, and the rest of the run is
    applied again without them. `errors` maps event ids to the exception each deserves."""

    def __init__(self, errors: Mapping[str, BaseException]) -> None:
        super().__init__(f"{len(errors)} events rejected: " + "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:5]))
        self.errors = dict(errors)


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("event_id", String, primary_key=True),
        Column("event_type", String, nullable=False),
        Column("topic", String, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("status", String, nullable=False, server_default="applied"),
        Column("error", Text, nullable=True),
        Column("error_code", String, nullable=True),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def widen_inbox_offset(op: Any, schema: str) -> None:
    """For a service's Alembic migration: the inbox's `offset` as BIGINT (Kafka offsets are int64)."""
    op.alter_column("inbox", "offset", type_=BigInteger(), existing_type=Integer(), existing_nullable=False, schema=schema)


def narrow_inbox_offset(op: Any, schema: str) -> None:
    op.alter_column("inbox", "offset", type_=Integer(), existing_type=BigInteger(), existing_nullable=False, schema=schema)


def add_inbox_error_code(op: Any, schema: str) -> None:
    """For a service's Alembic migration: the inbox's `error_code`, the stable code of a
    dead-lettered event's error (as in its `dlq_code` header)."""
    op.add_column("inbox", Column("error_code", String(), nullable=True), schema=schema, if_not_exists=True)


def drop_inbox_error_code(op: Any, schema: str) -> None:
    op.drop_column("inbox", "error_code", schema=schema, if_exists=True)


@dataclass(frozen=True)
class Route:
    model: type[EventData]
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    envelope: type[CloudEvent[Any]] = field(init=False)

    _datas: TypeAdapter[list[Any]] = field(init=False, repr=False)
    _envelopes: TypeAdapter[list[Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The envelope class of this type, built once rather than for every message; and the
        # validators of a batch of them (each value still parsed as a JSON document of its own).
        envelope = envelope_class(self.model)
        object.__setattr__(self, "envelope", envelope)
        object.__setattr__(self, "_datas", TypeAdapter(list[Json[self.model]]))  # type: ignore[name-defined]  # a class known only at run time
        object.__setattr__(self, "_envelopes", TypeAdapter(list[envelope]))  # type: ignore[valid-type]  # a class known only at run time

    def decode(self, attrs: dict[str, str], value: bytes) -> CloudEvent[Any]:
        """What `billing_events.from_kafka` does, for headers already read (the route was chosen
        by the type attribute, so the type matches)."""
        try:
            return self.envelope(data=self.model.model_validate_json(value), **attrs)
        except (ValueError, TypeError) as exc:
            raise EnvelopeError(f"invalid {self.model.event_type} event: {exc}") from exc

    def decode_structured(self, elements: list[Any]) -> list[CloudEvent[Any] | EnvelopeError]:
        """Structured-mode events (the elements of batch messages, parsed) of this route's type:
        validated in one call, or one at a time when one of them is invalid."""
        try:
            return self._envelopes.validate_python(elements)
        except (ValueError, TypeError):
            pass
        decoded: list[CloudEvent[Any] | EnvelopeError] = []
        for element in elements:
            try:
                decoded.append(self.envelope.model_validate(element))
            except (ValueError, TypeError) as exc:
                decoded.append(EnvelopeError(f"invalid {self.model.event_type} event: {exc}"))
        return decoded

    def decode_many(self, attrs: list[dict[str, str]], values: list[bytes]) -> list[CloudEvent[Any] | EnvelopeError]:
        """`decode` for many messages: the same events, validated in two calls for the batch
        (data, then envelopes) rather than two per message. A batch with an invalid message is
        decoded again one message at a time, so each gets its own verdict (an event or its error)."""
        if not any("data" in a for a in attrs):  # a `ce_data` header: left to `decode` to refuse
            try:
                datas = self._datas.validate_python(values)
                return self._envelopes.validate_python([{**a, "data": d} for a, d in zip(attrs, datas, strict=True)])
            except (ValueError, TypeError):
                pass
        decoded: list[CloudEvent[Any] | EnvelopeError] = []
        for a, value in zip(attrs, values, strict=True):
            try:
                decoded.append(self.decode(a, value))
            except EnvelopeError as exc:
                decoded.append(exc)
        return decoded


# Database errors that are the database's state, not the event's: retried without end.
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "53", "57P", "55P03", "58")


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError, KafkaError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        return sqlstate.startswith(_TRANSIENT_SQLSTATES)
    return False


def _error_code(exc: BaseException) -> str:
    """A dead letter's code: a BillingError's own, else `handler_failed` (never read out of a message)."""
    return exc.code if isinstance(exc, BillingError) else HANDLER_FAILED


def _foreign_tenant(route: Route, event: CloudEvent[Any]) -> ForeignTenant | None:
    """The check every consumer makes of an event whose model declares the data field naming its
    tenant: that field must be the envelope's tenant."""
    field_name = route.model.tenant_field
    if field_name is None:
        return None
    named = getattr(event.data, field_name)
    if named == event.tenant:
        return None
    return ForeignTenant(f"event {event.id} is for tenant {event.tenant!r} but its {field_name} is {named!r}")


def _describe(exc: BaseException) -> str:
    code = exc.code if isinstance(exc, BillingError) else None
    return f"{type(exc).__name__}{f' [{code}]' if code else ''}: {exc}"


@dataclass
class _Item:
    """One message of a polled batch, decoded (or not), with the key it is recorded under."""

    message: ConsumerRecord[bytes, bytes]
    key: str
    event_type: str
    route: Route | None  # None: a batch message that could not be unpacked (dead-lettered whole)
    event: CloudEvent[Any] | None = None
    error: str | None = None  # why it could not be decoded
    code: str | None = None
    index: int | None = None  # its place in a batch message
    element: Any = None  # and its structured event there, parsed
    attrs: dict[str, str] | None = None  # a binary-mode message's attributes, read off its headers

    @property
    def decoded(self) -> CloudEvent[Any]:
        """The event of an item that is applied (only decoded ones are)."""
        assert self.event is not None, f"{self.key} was not decoded"
        return self.event


def _judge(item: _Item, route: Route, decoded: CloudEvent[Any] | EnvelopeError) -> None:
    """An item's verdict from its decoding, a single message's or a batch element's alike: its
    event, or why it is refused (invalid, or another tenant's)."""
    if isinstance(decoded, EnvelopeError):
        item.error = str(decoded)
        item.code = "invalid_event"
    elif (foreign := _foreign_tenant(route, decoded)) is not None:
        item.error = _describe(foreign)
        item.code = foreign.code
    else:
        item.event = decoded


_Groups = dict[str, tuple[Route, list[_Item]]]


@dataclass
class _Sorted:
    """A polled batch's items as `_decode` sorts them: each key once, in offset order; the repeats
    of a key (a republished event next to the original); and the new ones by type, for one
    decoding call per type (binary-mode messages apart from the events of batch messages)."""

    items: list[_Item] = field(default_factory=list)
    repeats: list[_Item] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    binary: _Groups = field(default_factory=dict)
    structured: _Groups = field(default_factory=dict)

    def admit(self, item: _Item, route: Route, groups: _Groups) -> None:
        if item.key in self.seen:
            self.repeats.append(item)
            return
        self.seen.add(item.key)
        self.items.append(item)
        group = groups.get(item.event_type)
        if group is None:
            group = groups[item.event_type] = (route, [])
        group[1].append(item)


@dataclass
class _Outcome:
    """What one attempt at a batch did (filled in as it goes; thrown away if it rolls back)."""

    applied: list[_Item] = field(default_factory=list)
    duplicates: list[_Item] = field(default_factory=list)
    dead: list[tuple[_Item, str, str]] = field(default_factory=list)


class InboxConsumer:
    """Applies each polled batch of a partition in one transaction: one inbox insert for the
    whole batch tells which events are new, the handlers apply those in offset order, one commit,
    then one offset commit. A batch whose handlers fail is applied again with each handler call in
    a savepoint, so the poison event is found (a failing run of a batch handler is bisected) and
    dead-lettered alone while the rest applies."""

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
        max_batch: int = 1000,
        max_batch_bytes: int = 1_048_576,
        concurrency: int = 1,
        max_partition_fetch_bytes: int = 262_144,
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
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.concurrency = concurrency
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.topics = sorted({route.model.topic.name for route in routes.values()})
        self.ready = asyncio.Event()
        """Set once the consumer has been through its first assignment and knows where each of its
        partitions starts: from then on nothing published is missed, even with `latest`."""
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._record = self._record_statement(table)
        self._mark_dead = self._mark_dead_statement(table)

    def request_stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group and return from `run`."""
        self._stopping.set()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer holds now."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def run(self) -> None:
        from billing_runtime.kafka import start_with_retry

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.service}-consumer",
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=self.max_batch,
            # A poll is bounded in messages, and a batch message carries up to a thousand events:
            # the fetch's bytes per partition bound what one poll holds (a larger message still comes).
            max_partition_fetch_bytes=self.max_partition_fetch_bytes,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(self.session_timeout_ms // 4, 250),
        )
        self._consumer = consumer
        await start_with_retry(consumer)
        consumer.subscribe(self.topics, listener=_Positions(self, consumer))
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if self.concurrency > 1 and len(batches) > 1:
                    # Partitions apply side by side (each in its own transaction, each in order):
                    # one's decoding overlaps another's round trips to the database.
                    slots = asyncio.Semaphore(self.concurrency)
                    async with asyncio.TaskGroup() as group:
                        for tp, messages in batches.items():
                            group.create_task(self._partition_batch(consumer, tp, messages, slots))
                    continue
                for tp, messages in batches.items():
                    if self._stopping.is_set():
                        break
                    await self._partition_batch(consumer, tp, messages)
        finally:
            await consumer.stop()

    async def _partition_batch(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, messages: list[ConsumerRecord[bytes, bytes]], slots: asyncio.Semaphore | None = None
    ) -> None:
        # A polled batch is applied in runs bounded by bytes: a run is decoded whole, and events
        # that carry an invoice's every line weigh ten thousand times a usage record.
        runs = list(byte_bounded(messages, self.max_batch_bytes))
        if len(runs) > 1:
            BATCH_SPLITS.labels(self.service, tp.topic).inc()
        for run in runs:
            if slots is not None:
                async with slots:
                    await self.apply_batch(tp, run)
            else:
                await self.apply_batch(tp, run)
            await self._commit_offset(consumer, tp, run[-1].offset + 1)
        self._record_lag(consumer, tp, messages[-1].offset)

    async def _commit_offset(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        # The inbox, not the offset, is what makes an event apply once: a commit lost to a
        # rebalance or a broker hiccup only means the next owner reads the batch again and skips it.
        try:
            await consumer.commit({tp: offset})
        except KafkaError as exc:
            log.warning("%s could not commit offset %d of %s: %s; the batch will be read again and skipped", self.service, offset, tp, exc)

    def _record_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, last_offset: int) -> None:
        highwater = consumer.highwater(tp)
        if highwater is not None:
            BROKER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(max(highwater - last_offset - 1, 0))

    # -- one batch ---------------------------------------------------------------------------

    def _decode(self, messages: list[ConsumerRecord[bytes, bytes]]) -> tuple[list[_Item], list[_Item]]:
        """The messages this service routes, decoded (or marked undecodable), each key once; and the
        repeats of a key within the batch (a republished event next to the original)."""
        batch = _Sorted()
        for message in messages:
            if is_batch(message.headers or ()):
                self._unpack(message, batch)
                continue
            attrs = attributes_from_headers(message.headers or ())
            event_type = attrs.get("type", "")
            route = self.routes.get(event_type)
            if route is None:
                continue  # another service's business on a shared topic
            batch.admit(_Item(message, attrs.get("id") or _position_key(message), event_type, route, attrs=attrs), route, batch.binary)
        for route, routed in batch.binary.values():
            values = [i.message.value or b"" for i in routed]
            for item, decoded in zip(routed, route.decode_many([i.attrs or {} for i in routed], values), strict=True):
                _judge(item, route, decoded)
        for route, routed in batch.structured.values():
            for item, decoded in zip(routed, route.decode_structured([i.element for i in routed]), strict=True):
                _judge(item, route, decoded)
        return batch.items, batch.repeats

    def _unpack(self, message: ConsumerRecord[bytes, bytes], batch: _Sorted) -> None:
        """The events of a batch message this service routes, as items in their order; a message
        that is not a JSON array is one undecodable item (dead-lettered whole)."""
        try:
            elements = batch_elements(message.value or b"")
        except EnvelopeError as exc:
            key = _position_key(message)
            if key not in batch.seen:
                batch.seen.add(key)
                batch.items.append(_Item(message, key, "", None, error=str(exc), code="invalid_event"))
            return
        for index, element in enumerate(elements):
            event_type = element.get("type") if isinstance(element, dict) else None
            route = self.routes.get(event_type) if isinstance(event_type, str) else None
            if route is None or not isinstance(event_type, str):
                continue  # another service's business (or no type: no service's)
            event_id = element.get("id")
            key = event_id if isinstance(event_id, str) and event_id else f"{_position_key(message)}:{index}"
            batch.admit(_Item(message, key, event_type, route, index=index, element=element), route, batch.structured)

    async def apply_batch(self, tp: TopicPartition, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply one polled batch of one partition: retried without end while the database or the
        broker is away, and isolating the poison when a handler fails."""
        items, repeats = self._decode(messages)
        for item in repeats:
            EVENTS_DUPLICATE.labels(self.service, item.event_type).inc()
        if not items:
            return
        BATCH_SIZE.labels(self.service, tp.topic).observe(len(items))
        BATCH_BYTES.labels(self.service, tp.topic).observe(sum(len(m.value or b"") for m in messages))
        started = time.perf_counter()
        isolating = False
        attempt = 0
        with self._batch_span(tp, items):
            while True:
                attempt += 1
                try:
                    outcome = await self._attempt(items, isolating)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if _is_transient(exc):
                        log.warning("transient failure applying a batch of %d from %s: %s; retrying", len(items), tp, exc)
                        await asyncio.sleep(min(5.0, 0.5 * attempt))
                        continue
                    if isolating:
                        raise  # not a handler's failure: the consumer restarts and reads the batch again
                    log.warning("a handler failed in a batch of %d from %s (%s); applying it again, isolating the poison", len(items), tp, _describe(exc))
                    BATCH_ISOLATIONS.labels(self.service, tp.topic).inc()
                    isolating = True
        BATCH_APPLY_SECONDS.labels(self.service, tp.topic).observe(time.perf_counter() - started)
        dead = [i for i, _, _ in outcome.dead]
        for code, n in Tally(c for _, _, c in outcome.dead).items():
            DEAD_LETTER_CODES.labels(self.service, code).inc(n)
        for metric, items_of in ((EVENTS_APPLIED, outcome.applied), (EVENTS_DUPLICATE, outcome.duplicates), (EVENTS_DEAD_LETTERED, dead)):
            for event_type, n in Tally(i.event_type or "unknown" for i in items_of).items():
                metric.labels(self.service, event_type).inc(n)

    def _batch_span(self, tp: TopicPartition, items: list[_Item]) -> Any:
        """One span per batch: the child of the first event's trace, linked to the others'. For an
        event out of a batch message, the child of the message's own `traceparent` (the relay's
        produce span, itself a child of the trace the events carry) when it has one."""
        events = [i.event for i in items if i.event is not None]
        types = {i.event_type for i in items}
        carried = events[0].traceparent if events else None
        if items[0].index is not None:
            carried = next((v.decode() for k, v in items[0].message.headers or () if k == "traceparent" and v), carried)
        parent = context_from_traceparent(carried) if events else None
        links = []
        for event in events[1 : _MAX_LINKS + 1] if tracing_enabled() else ():
            if event.traceparent:
                span_context = trace.get_current_span(context_from_traceparent(event.traceparent)).get_span_context()
                if span_context.is_valid:
                    links.append(trace.Link(span_context))
        return tracer.start_as_current_span(
            f"consume {next(iter(types))}" if len(types) == 1 else f"consume {tp.topic}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": tp.topic,
                "messaging.destination.partition.id": str(tp.partition),
                "messaging.batch.message_count": len(items),
                "messaging.message.id": events[0].id if events else items[0].key,
                "billing.service": self.service,
            },
        )

    async def _attempt(self, items: list[_Item], isolating: bool) -> _Outcome:
        outcome = _Outcome()
        async with self.sessions() as session:
            async with session.begin():
                new = await self._insert_inbox(session, items)
                fresh: list[_Item] = []
                for item in items:
                    if item.key not in new:
                        outcome.duplicates.append(item)
                    elif item.event is None:
                        outcome.dead.append((item, item.error or "undecodable", item.code or "invalid_event"))
                    else:
                        fresh.append(item)
                for route, run in _runs(fresh):
                    if isolating:
                        await self._apply_isolating(session, route, run, outcome)
                    else:
                        await self._call(session, route, run)
                        outcome.applied.extend(run)
                poisoned = [(item, error, code) for item, error, code in outcome.dead if item.event is not None]
                if poisoned:
                    await session.execute(
                        self._mark_dead,
                        {"ids": [i.key for i, _, _ in poisoned], "errors": [e[:4000] for _, e, _ in poisoned], "codes": [c for _, _, c in poisoned]},
                    )
                await self._send_dead_letters(outcome.dead)
        return outcome

    async def _call(self, session: AsyncSession, route: Route, run: list[_Item]) -> None:
        if route.batch_handler is not None:
            await route.batch_handler(session, [i.decoded for i in run])
            await _settle(session)
            return
        assert route.handler is not None
        for item in run:
            await route.handler(session, item.decoded)
            await _settle(session)

    async def _apply_isolating(self, session: AsyncSession, route: Route, run: list[_Item], outcome: _Outcome) -> None:
        """Apply `run` with each handler call in a savepoint: a failing run of a batch handler is
        split in halves until the event that fails is alone; that one is tried `max_attempts`
        times, then dead-lettered."""
        units: list[list[_Item]] = [run] if route.batch_handler is not None else [[item] for item in run]
        while units:
            unit = units.pop(0)
            attempt = 0
            while True:
                attempt += 1
                try:
                    async with session.begin_nested():
                        await self._call(session, route, unit)
                    outcome.applied.extend(unit)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    session.expunge_all()
                    if _is_transient(exc):
                        raise
                    errors = exc.errors if isinstance(exc, RejectedEvents) else {}
                    rejected = [i for i in unit if i.key in errors]
                    if rejected:
                        for item in rejected:
                            reason = errors[item.key]
                            log.warning("dead-lettering %s %s: %s", item.event_type, item.key, _describe(reason))
                            outcome.dead.append((item, _describe(reason), _error_code(reason)))
                        rest = [i for i in unit if i not in rejected]
                        if rest:
                            units.insert(0, rest)
                        break
                    if len(unit) > 1:
                        middle = len(unit) // 2
                        units[:0] = [unit[:middle], unit[middle:]]
                        break
                    if attempt < self.max_attempts:
                        await asyncio.sleep(0.05 * attempt)
                        continue
                    log.warning("dead-lettering %s %s after %d attempts: %s", unit[0].event_type, unit[0].key, attempt, _describe(exc), exc_info=exc)
                    outcome.dead.append((unit[0], _describe(exc), _error_code(exc)))
                    break

    async def _insert_inbox(self, session: AsyncSession, items: list[_Item]) -> set[str]:
        """Record every item of the batch (applied, or dead-lettered if undecodable) in one
        statement; the keys not recorded before are returned."""
        rows = await session.execute(
            self._record,
            {
                "ids": [i.key for i in items],
                "types": [i.event_type or "unknown" for i in items],
                "topic": items[0].message.topic,  # a batch is one partition's
                "partition": items[0].message.partition,
                "offsets": [i.message.offset for i in items],
                "statuses": ["applied" if i.event is not None else "dead_lettered" for i in items],
                "errors": [i.error[:4000] if i.error else None for i in items],
                "codes": [i.code for i in items],
            },
        )
        return {row[0] for row in rows}

    async def _send_dead_letters(self, dead: list[tuple[_Item, str, str]]) -> None:
        # Handed over in the transaction that records them, so a replay does not send them twice.
        # An event out of a batch message goes alone, as a binary-mode message of its own.
        futures = []
        for item, error, code in dead:
            message = item.message
            original, value = list(message.headers or []), message.value
            where: list[tuple[str, bytes]] = []
            if item.index is not None:
                if item.event is not None:
                    original = [(name, text.encode()) for name, text in header_texts(item.event)]
                    value = item.event.data.model_dump_json().encode()
                else:
                    original, value = binary_of(item.element)
                where = [("dlq_batch_index", str(item.index).encode())]
            headers = original + [
                ("dlq_service", self.service.encode()),
                ("dlq_topic", message.topic.encode()),
                ("dlq_partition", str(message.partition).encode()),
                ("dlq_offset", str(message.offset).encode()),
                *where,
                ("dlq_error", error[:4000].encode()),
                ("dlq_code", code.encode()),
            ]
            futures.append(await self.producer.send(DEAD_LETTER.name, value=value, key=message.key, headers=headers))
        if futures:
            await asyncio.gather(*futures)

    @staticmethod
    def _record_statement(table: Table) -> Any:
        name = _quoted_name(table)
        return text(
            f'INSERT INTO {name} (event_id, event_type, topic, partition, "offset", status, error, error_code) '
            'SELECT m.event_id, m.event_type, CAST(:topic AS text), CAST(:partition AS int), m."offset", m.status, m.error, m.error_code '
            "FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), CAST(:offsets AS bigint[]), CAST(:statuses AS text[]), "
            'CAST(:errors AS text[]), CAST(:codes AS text[])) AS m(event_id, event_type, "offset", status, error, error_code) '
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ).bindparams(
            bindparam("ids", type_=ARRAY(String)),
            bindparam("types", type_=ARRAY(String)),
            bindparam("topic", type_=String),
            bindparam("partition", type_=Integer),
            bindparam("offsets", type_=ARRAY(BigInteger)),
            bindparam("statuses", type_=ARRAY(String)),
            bindparam("errors", type_=ARRAY(Text)),
            bindparam("codes", type_=ARRAY(String)),
        )

    @staticmethod
    def _mark_dead_statement(table: Table) -> Any:
        name = _quoted_name(table)
        return text(
            f"UPDATE {name} AS i SET status = 'dead_lettered', error = d.error, error_code = d.error_code "
            "FROM unnest(CAST(:ids AS text[]), CAST(:errors AS text[]), CAST(:codes AS text[])) AS d(event_id, error, error_code) "
            "WHERE i.event_id = d.event_id"
        ).bindparams(bindparam("ids", type_=ARRAY(String)), bindparam("errors", type_=ARRAY(Text)), bindparam("codes", type_=ARRAY(String)))


def _quoted_name(table: Table) -> str:
    """The table's name for a statement's text, its schema's in front (both quoted)."""
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


async def _settle(session: AsyncSession) -> None:
    """Between handler calls: what one wrote through the ORM is flushed, and the next starts
    with an empty identity map, as it would in a session of its own."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    session.expunge_all()


def _runs(items: list[_Item]) -> Iterator[tuple[Route, list[_Item]]]:
    """Consecutive items of one route, in offset order."""
    run: list[_Item] = []
    for item in items:
        if run and item.route is not run[0].route:
            yield _route_of(run), run
            run = []
        run.append(item)
    if run:
        yield _route_of(run), run


def _route_of(run: list[_Item]) -> Route:
    route = run[0].route
    assert route is not None, "only decoded items are applied, and those have a route"
    return route


def byte_bounded(messages: list[ConsumerRecord[bytes, bytes]], max_bytes: int) -> Iterator[list[ConsumerRecord[bytes, bytes]]]:
    """`messages` in consecutive runs, in order, of at most `max_bytes` of values each; a message
    larger than that alone."""
    run: list[ConsumerRecord[bytes, bytes]] = []
    size = 0
    for message in messages:
        weight = len(message.value or b"")
        if run and size + weight > max_bytes:
            yield run
            run, size = [], 0
        run.append(message)
        size += weight
    if run:
        yield run


def _position_key(message: ConsumerRecord[bytes, bytes]) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"


class _Positions(ConsumerRebalanceListener):
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
