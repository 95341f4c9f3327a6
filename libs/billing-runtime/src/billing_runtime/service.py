"""The composition root every service builds on: engine, outbox, inbox consumer, producer,
clock, and the FastAPI app with health, readiness, metrics and problem+json errors."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Generic, Literal, NamedTuple

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram, make_asgi_app
from pydantic import BaseModel
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table, UniqueConstraint, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import registry
from typing_extensions import TypeVar

from billing_events import CloudEvent, EventData, new_event
from billing_runtime.clock import Clock, clock_from
from billing_runtime.config import CommonSettings
from billing_runtime.conventions import http_tables, install_http_conventions
from billing_runtime.crypto import Keyring, SecretsKeyMissing
from billing_runtime.db import create_engine, schema_registry, session_factory
from billing_runtime.docs import install_docs
from billing_runtime.errors import install_error_handlers
from billing_runtime.inbox import EVENTS_APPLIED, EVENTS_DEAD_LETTERED, EVENTS_DUPLICATE, BatchHandler, Handler, InboxConsumer, Route, inbox_table
from billing_runtime.kafka import make_producer, start_with_retry
from billing_runtime.lag import LagMeter
from billing_runtime.outbox import Outbox, OutboxRelay, outbox_session_class, outbox_table
from billing_runtime.tasks import cancel, keep_running
from billing_runtime.telemetry import setup_telemetry
from billing_runtime.unit import current_unit

log = logging.getLogger(__name__)

PERIODIC_RUNS = Counter("billing_periodic_runs_total", "Runs of a service's periodic work (`ServiceRuntime.every`), by outcome", ["service", "task", "outcome"])
PERIODIC_SECONDS = Histogram(
    "billing_periodic_run_seconds",
    "Time of one run of a service's periodic work (`ServiceRuntime.every`)",
    ["service", "task"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)

EventHandler = Callable[["ServiceRuntime[Any]", AsyncSession, CloudEvent[Any]], Awaitable[None]]
"""A consumer's handler of one event: `async def on_x(runtime, session, event: CloudEvent[X]) -> None`,
in the transaction of the polled batch the event came in. (`runtime` may be typed with the
service's own settings, `ServiceRuntime[Settings]`: the service registers its handlers on its own runtime.)"""

EventBatchHandler = Callable[["ServiceRuntime[Any]", AsyncSession, list[CloudEvent[Any]]], Awaitable[None]]
"""A consumer's handler of a run of events of one type: `async def on_xs(runtime, session,
events: list[CloudEvent[X]]) -> None` (see `ServiceRuntime.on_batch`)."""

Handlers = Mapping[type[EventData], EventHandler]
"""What a consumers module exports as `HANDLERS`: each event model and its handler."""

BatchHandlers = Mapping[type[EventData], EventBatchHandler]
"""What a consumers module exports as `BATCH_HANDLERS`."""

Periodic = Callable[[], Awaitable[bool | None]]
"""One run of periodic work (`ServiceRuntime.every`); True: it found more than it took, run again at once."""


class RequestSessions:
    """`runtime.sessions()`: a new session; inside a write request's unit (`unit.py`), one bound to
    the request's connection, in a savepoint of its transaction."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self.maker = maker

    def __call__(self, **kw: Any) -> AsyncSession:
        unit = current_unit()
        if unit is not None and "bind" not in kw:
            return self.maker(bind=unit.connection, join_transaction_mode="create_savepoint", **kw)
        return self.maker(**kw)


def runtime_tables(metadata: MetaData, *, outbox_pending: bool = False) -> tuple[Table, Table]:
    """The outbox and inbox tables, created in the service's own schema. `outbox_pending`: the
    outbox keeps its unsent rows' ids in `outbox_pending` (see `billing_runtime.outbox`)."""
    return outbox_table(metadata, pending=outbox_pending), inbox_table(metadata)


def add_runtime_tables(op: Any, schema: str) -> None:
    """For a new service's first Alembic migration, beside `add_http_tables`: the outbox and the
    inbox as `runtime_tables` declares them (columns, keys, indexes), created if not there yet."""
    for table in runtime_tables(MetaData(schema=schema)):
        columns = [Column(c.name, c.type, nullable=c.nullable, autoincrement=c.autoincrement, server_default=c.server_default) for c in table.columns]
        constraints: list[Any] = [PrimaryKeyConstraint(*[c.name for c in table.primary_key.columns], name=f"pk_{table.name}")]
        constraints += [UniqueConstraint(c.name, name=f"uq_{table.name}_{c.name}") for c in table.columns if c.unique]
        op.create_table(table.name, *columns, *constraints, schema=schema, if_not_exists=True)
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            where = index.dialect_options["postgresql"].get("where")
            op.create_index(str(index.name), table.name, [c.name for c in index.columns], schema=schema, postgresql_where=where, if_not_exists=True)


def drop_runtime_tables(op: Any, schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".outbox')
    op.execute(f'DROP TABLE IF EXISTS "{schema}".inbox')


class ServiceSchema(NamedTuple):
    """What a service's `db.py` declares: its schema's ORM registry (for `class Base(SQLModel,
    registry=...)`) and MetaData, the runtime's outbox and inbox, and the HTTP conventions'
    idempotency and audit tables, all in that schema."""

    registry: registry
    metadata: MetaData
    outbox: Table
    inbox: Table
    idempotency: Table
    audit: Table


def service_schema(schema: str, *, outbox_pending: bool = False) -> ServiceSchema:
    """A service's schema and the runtime's tables in it (`runtime_tables`, `http_tables`)."""
    orm = schema_registry(schema)
    outbox, inbox = runtime_tables(orm.metadata, outbox_pending=outbox_pending)
    idempotency, audit = http_tables(orm.metadata)
    return ServiceSchema(orm, orm.metadata, outbox, inbox, idempotency, audit)


SettingsT = TypeVar("SettingsT", bound=CommonSettings, default=CommonSettings, covariant=True)
"""A service's own Settings: `ServiceRuntime[Settings]` types `runtime.settings.<its field>`."""


@dataclass
class ServiceRuntime(Generic[SettingsT]):
    """Everything a running service shares. Built once per process (or per test). Generic over
    the service's settings (`ServiceRuntime(SERVICE, Settings(), metadata)` is a
    `ServiceRuntime[Settings]`); code that reads only the common ones takes a bare `ServiceRuntime`."""

    name: str
    settings: SettingsT
    metadata: MetaData
    clock: Clock = field(init=False)
    engine: AsyncEngine = field(init=False)
    sessions: RequestSessions = field(init=False)
    outbox: Outbox = field(init=False)
    producer: AIOKafkaProducer | None = field(init=False, default=None)
    relay: OutboxRelay | None = field(init=False, default=None)
    consumer: InboxConsumer | None = field(init=False, default=None)
    routes: dict[str, Route] = field(init=False, default_factory=dict)
    # Set by `seal_secrets()` in services that keep secrets (payments, notify).
    keyring: Keyring | None = field(init=False, default=None)
    background: list[tuple[str, Callable[[], Awaitable[None]]]] = field(init=False, default_factory=list)
    # False: `start` runs no broker consumer; events reach the handlers through `inbox_consumer()`
    # called directly (the test harness's in-process `deliver`), through the same batch dispatch.
    consume_from_broker: bool = field(init=False, default=True)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.clock = clock_from(self.settings.clock_fixed_at)
        self.engine = create_engine(self.settings.database_url)
        # A commit that wrote outbox rows wakes the relay (whoever commits: an endpoint, the
        # consumer, a background loop); one that wrote none does not.
        self.sessions = RequestSessions(session_factory(self.engine, sync_session_class=outbox_session_class(self.name, self._wake_relay)))
        self.outbox_table = self.metadata.tables[f"{self.metadata.schema}.outbox"]
        self.inbox_table = self.metadata.tables[f"{self.metadata.schema}.inbox"]
        self.outbox = Outbox(self.outbox_table)

    def seal_secrets(self) -> Keyring:
        """The keyring from SECRETS_KEYS (billing_runtime.crypto), loaded now: a service that keeps
        secrets calls it while it is built, so a missing key stops it at start-up."""
        self.keyring = Keyring.from_settings(self.settings)
        return self.keyring

    def sealing(self) -> Keyring:
        if self.keyring is None:
            raise SecretsKeyMissing(f"{self.name} keeps secrets but did not load its keyring (ServiceRuntime.seal_secrets)")
        return self.keyring

    def on(self, model: type[EventData], handler: Handler) -> None:
        """Apply `handler` to every event of this type, once (called once per event, inside the
        transaction of the polled batch the event came in)."""
        self.routes[model.event_type] = Route(model, handler=handler)

    def on_batch(self, model: type[EventData], handler: BatchHandler) -> None:
        """Apply `handler` to every event of this type, once: it is given each consecutive run of
        new (deduplicated) events of the type in a polled batch, in offset order, inside the
        batch's transaction, for set-based SQL. To refuse some events (a domain rule), raise
        `billing_runtime.inbox.RejectedEvents`: those are dead-lettered and the rest applied again;
        any other exception has the run bisected to find the event that fails."""
        self.routes[model.event_type] = Route(model, batch_handler=handler)

    def consume(self, *handlers: Handlers, batch: BatchHandlers | None = None) -> None:
        """Register a service's consumers at once: each `HANDLERS` mapping (event model → handler,
        called once per event, `on`) and the `BATCH_HANDLERS` (called with runs of events,
        `on_batch`). Every handler is given this runtime, the batch's session and its event(s).
        A model handled twice is a wiring mistake and refused."""
        seen: set[type[EventData]] = set()
        for model, handler in [(m, h) for mapping in handlers for m, h in mapping.items()]:
            self._consumes(model, seen)
            self.on(model, partial(handler, self))
        for model, batch_handler in (batch or {}).items():
            self._consumes(model, seen)
            self.on_batch(model, partial(batch_handler, self))

    def _consumes(self, model: type[EventData], seen: set[type[EventData]]) -> None:
        if model in seen or model.event_type in self.routes:
            raise ValueError(f"{self.name} has two handlers of {model.__name__}")
        seen.add(model)

    def _wake_relay(self) -> None:
        unit = current_unit()
        if unit is not None:  # the request's transaction has not committed yet: the middleware wakes it
            unit.wrote_outbox = True
            return
        if self.relay is not None:
            self.relay.wake()

    def run_in_background(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop` for as long as the service runs (started after the relay and consumer,
        restarted if it fails, cancelled on stop). For work that repeats, use `every`."""
        self.background.append((name, loop))

    def every(self, name: str, seconds: float, run: Periodic) -> None:
        """Run `run` now and then every `seconds` for as long as the service runs; a run that
        returns True (it found more than it took) is followed at once by the next. A failing run
        is logged and counted (`billing_periodic_runs_total{outcome="failed"}`), and the next
        comes after the interval as usual."""
        for outcome in ("ok", "failed"):
            PERIODIC_RUNS.labels(self.name, name, outcome)
        self.background.append((name, partial(self._every, name, seconds, run)))

    async def _every(self, name: str, seconds: float, run: Periodic) -> None:
        while True:
            started = time.perf_counter()
            try:
                more = await run()
                outcome = "ok"
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment; the work must outlive it
                log.exception("%s %s failed; next run in %g s", self.name, name, seconds)
                more, outcome = False, "failed"
            PERIODIC_RUNS.labels(self.name, name, outcome).inc()
            PERIODIC_SECONDS.labels(self.name, name).observe(time.perf_counter() - started)
            if not more:
                await asyncio.sleep(seconds)

    def event(self, data: EventData, *, tenant: str, event_id: str | None = None, subject: str | None = None) -> CloudEvent[Any]:
        return new_event(data, source=self.name, tenant=tenant, event_id=event_id, subject=subject, time=self.clock.now())

    @contextlib.asynccontextmanager
    async def transaction(self, *, own: bool = False, savepoint: bool = True) -> AsyncIterator[AsyncSession]:
        """One unit of work: state and outbox rows commit together; the relay is woken after
        (only if outbox rows were written). Inside a write request, this is a savepoint of the
        request's transaction, which commits with its audit row (see `unit.py`). `own=True`: a
        transaction of its own that commits when the block ends, even inside a request, for what
        must be durable before an outside call (a provider) whatever the request's end.
        `savepoint=False`: inside a write request, the session joins the request's transaction
        itself, with no SAVEPOINT and RELEASE round trips: the block's end commits nothing (the
        request commits), and a failure in it rolls back the whole request. For a handler whose
        every failure fails the request anyway (the usage batch path)."""
        unit = None if own or savepoint else current_unit()
        if unit is not None:
            async with self.sessions.maker(bind=unit.connection, join_transaction_mode="rollback_only") as session, session.begin():
                yield session
            return
        sessions = self.sessions.maker if own else self.sessions
        async with sessions() as session, session.begin():
            yield session

    def inbox_consumer(self, producer: AIOKafkaProducer | None = None) -> InboxConsumer:
        """The dispatch of this service's routes: `apply_batch(partition, records)` applies one
        polled batch (inbox, one transaction, handlers, dead letters through `producer`, the
        runtime's own by default). What `start` runs against the broker."""
        chosen = producer or self.producer
        if chosen is None:
            raise RuntimeError(f"{self.name}'s inbox consumer needs a producer for its dead letters: start the runtime or pass one")
        return InboxConsumer(
            service=self.name,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            sessions=self.sessions.maker,
            table=self.inbox_table,
            producer=chosen,
            routes=self.routes,
            max_attempts=self.settings.consumer_max_attempts,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            group_id=f"{self.settings.consumer_group_prefix}{self.name}",
            auto_offset_reset=self.settings.consumer_auto_offset_reset,
            max_batch=self.settings.consumer_max_batch,
            max_batch_bytes=self.settings.consumer_max_batch_bytes,
            concurrency=self.settings.consumer_concurrency,
            max_partition_fetch_bytes=self.settings.consumer_max_partition_fetch_bytes,
        )

    async def start(self, *, consume: bool | None = None, relay: bool = True) -> None:
        consume = self.consume_from_broker if consume is None else consume
        _freeze_startup_heap()
        self.producer = make_producer(self.settings, client_id=self.name)
        await start_with_retry(self.producer)
        if relay:
            self.relay = OutboxRelay(
                service=self.name,
                engine=self.engine,
                table=self.outbox_table,
                producer=self.producer,
                poll_interval=self.settings.outbox_poll_ms / 1000,
                retention=timedelta(days=self.settings.outbox_retention_days),
            )
            self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        if consume and self.routes:
            # 0 for every type it routes, so "none happened" reads 0 on a dashboard, not "no data".
            for event_type in self.routes:
                for counter in (EVENTS_APPLIED, EVENTS_DUPLICATE, EVENTS_DEAD_LETTERED):
                    counter.labels(self.name, event_type)
            self.consumer = self.inbox_consumer()
            self._tasks.append(asyncio.create_task(keep_running(self.consumer.run, f"{self.name} consumer"), name=f"{self.name}-consumer"))
            self._tasks.append(asyncio.create_task(keep_running(self._measure_lag, f"{self.name} lag"), name=f"{self.name}-lag"))
        for name, loop in self.background:
            self._tasks.append(asyncio.create_task(keep_running(loop, f"{self.name} {name}"), name=f"{self.name}-{name}"))

    def lag_meter(self) -> LagMeter:
        """The consumer's lag from the outboxes and its inbox (see `billing_runtime.lag`)."""
        return LagMeter(self.name, self.inbox_table, self.routes)

    async def _measure_lag(self) -> None:
        meter = self.lag_meter()
        topics = sorted({route.model.topic.name for route in self.routes.values()})
        while True:
            # First after one interval: a process that lives for less (a test's app) never scans.
            await asyncio.sleep(self.settings.consumer_lag_interval_seconds)
            try:
                await meter.export(self.engine, topics)
            except Exception as exc:  # the database away: the consumer says so too; measured again next time
                log.warning("%s could not measure its lag: %s", self.name, exc)

    async def stop(self) -> None:
        # The consumer is asked to stop first, so it commits what it applied and leaves its group
        # cleanly (its partitions move at once instead of after the session timeout); cancelled
        # only if that takes too long. Then the other loops, newest first: they may still use the
        # relay and the engine.
        if self.consumer is not None:
            self.consumer.request_stop()
            consuming = [t for t in self._tasks if t.get_name() == f"{self.name}-consumer"]
            if consuming:
                await asyncio.wait(consuming, timeout=15.0)
        for task in reversed(self._tasks):
            await cancel(task)
        self._tasks.clear()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        await self.engine.dispose()

    async def wait_consuming(self, timeout: float = 60.0) -> None:
        """Return once the consumer (if any) has its partitions and knows where each starts."""
        if self.consumer is None:
            return
        try:
            await asyncio.wait_for(self.consumer.ready.wait(), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}'s consumer (group {self.consumer.group_id}) got no partition assignment in {timeout:g} s") from None

    async def ready(self) -> dict[str, str]:
        problems: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # readiness reports, it does not raise
            problems["database"] = str(exc)
        if self.producer is None:
            problems["kafka"] = "producer not started"
        if self.consumer is not None and not self.consumer.ready.is_set():
            problems["consumer"] = "not yet assigned its partitions"
        return problems


def _freeze_startup_heap() -> None:
    """Move everything allocated so far (modules, the app, pydantic and SQLAlchemy schemas: some
    hundred thousand objects that live as long as the process) out of the cyclic collector's
    sight. Otherwise each full collection walks all of them, and the consumer's batches, whose
    objects live across many young collections, trigger full collections often: a third of the
    decoding CPU went there (bench/backlog.py). What is allocated later is collected as before.
    Once per process (a test session starts many runtimes)."""
    global _heap_frozen
    if _heap_frozen:
        return
    _heap_frozen = True
    gc.collect()
    gc.freeze()


_heap_frozen = False


class Health(BaseModel):
    """The process is up (it says nothing of the database or the broker: see `/readyz`)."""

    status: Literal["ok"]
    service: str


class Readiness(BaseModel):
    """The service can take requests: its database and broker answer."""

    status: Literal["ready"]
    service: str


def create_app(runtime: ServiceRuntime, routers: Sequence[APIRouter], *, title: str, description: str = "") -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # docs_url=None: FastAPI's /docs and /redoc load from a CDN; install_docs serves local assets.
    app = FastAPI(title=title, description=description, lifespan=lifespan, docs_url=None, redoc_url=None)
    install_docs(app, title)
    setup_telemetry(app, runtime.name, runtime.settings.otel_exporter_otlp_endpoint)
    app.state.runtime = runtime
    install_error_handlers(app)
    install_http_conventions(app)

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @app.get("/readyz", tags=["health"], responses={200: {"model": Readiness}})
    async def readyz() -> JSONResponse:
        """200 when the database and the broker answer; 503 `{"status": "not_ready", "problems": {what: why}}` when not."""
        problems = await runtime.ready()
        if problems:
            return JSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready", "service": runtime.name})

    for router in routers:
        app.include_router(router)
    app.mount("/metrics", make_asgi_app())
    return app
