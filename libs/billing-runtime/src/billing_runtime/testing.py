"""The shared test harness: pytest fixtures for integration tests against real servers
(PostgreSQL: the one on 127.0.0.1:5432 or `DATABASE_URL`, else an embedded one; a Tansu broker),
and the helpers every suite uses: `serve` / `serve_all` (a service app in this process),
`serve_on_port` (one on a real port), `eventually` (poll until a probe answers), `migrate` (a
service's schema at head, once a session),
`publish` / `publish_events` / `read_events` (the broker, as a peer service sees it),
`tenant_headers` / `api_key_headers` (a request as one tenant, behind a gateway or with a key).

Loaded automatically (a pytest11 entry point) wherever billing-runtime is installed. Every fixture
is worker-safe under pytest-xdist: each worker has its own database, broker and random ports.

Fixtures: `postgres_server`, `database_url`, `kafka_broker`, `kafka_bootstrap`, `producer`,
`publish`, `tenant` (a conftest may override any of them, e.g. with another tenant prefix), and
the autouse `own_consumer_groups`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import itertools
import os
import time
import uuid
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from fastapi import FastAPI
from prometheus_client import Counter, Histogram

from billing_events import CloudEvent, EnvelopeError, KafkaMessage, attributes_from_headers, from_kafka, is_batch, model_for, to_kafka
from billing_events.envelope import batch_elements, from_structured
from billing_events.topics import DEAD_LETTER
from billing_runtime.embedded import (
    TansuBroker,
    drop_database,
    ensure_database,
    free_port,
    port_open,
    postgres_answers,
    start_embedded_postgres,
    with_database,
)
from billing_runtime.kafka import CachedPartitioner

DEFAULT_TEST_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")

DELIVERED = Counter("billing_test_events_delivered_total", "Events handed to a service in process by the test harness's deliver()")
DELIVER_SECONDS = Histogram("billing_test_deliver_seconds", "Time of one in-process deliver() call of the test harness")


# The session timeout of a consumer a test stops (or kills) and starts again in the same group:
# with the default below Tansu answers that second JoinGroup after 4 s, with 1000 ms after 1 s, as
# it answers a first one. For services whose handlers never hold the event loop near a second.
REJOIN_SESSION_TIMEOUT_MS = 1000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "consume(enabled): whether the test's served services consume from the broker (see `consumes`)")
    # Tansu answers a JoinGroup only after half the session timeout, rounded up to whole seconds
    # (it waits for other members; measured: 3000 ms joins in 2 s, 2000 and 1000 ms in 1 s), and
    # every test's services join groups of their own: 2000 ms is the shortest join, with a busy
    # test process still given two seconds to heartbeat before it is expelled.
    os.environ.setdefault("CONSUMER_SESSION_TIMEOUT_MS", "2000")
    # Service suites name their tenant in X-Tenant-Id, as behind an authenticating gateway; the
    # API-key tests (libs/billing-runtime, tests/security) build their apps with AUTH_MODE=api_key.
    os.environ.setdefault("AUTH_MODE", "trusted_header")
    # Secrets at rest are sealed with a generated development key (billing_runtime.crypto), never
    # one in the code; a test that needs the production behaviour unsets it.
    if not os.environ.get("SECRETS_KEYS"):
        os.environ.setdefault("SECRETS_DEV_KEY_FILE", str(config.rootpath / ".billing" / "test" / "secrets-dev-key.json"))
    # A consumer's lag scans the outboxes of every schema, and a test database holds the schemas of
    # the whole session: only tests that look at the lag measure it (they set a short interval).
    os.environ.setdefault("CONSUMER_LAG_INTERVAL_SECONDS", "3600")


@pytest.fixture(autouse=True)
def own_consumer_groups(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test's services consume in consumer groups of their own, starting at the end of each
    topic once assigned (`serve` waits for that): what an earlier test left in a shared group
    (a member still leaving, a rebalance under way, unread events) cannot reach this one. A
    service restarted within the test resumes from what it committed."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    monkeypatch.setenv("CONSUMER_GROUP_PREFIX", prefix)
    monkeypatch.setenv("CONSUMER_AUTO_OFFSET_RESET", "latest")
    return prefix


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL of a PostgreSQL server that answers (database part: `postgres`)."""
    url = os.environ.get("DATABASE_URL") or DEFAULT_TEST_SERVER
    if asyncio.run(postgres_answers(url)):
        return with_database(url, "postgres")
    # Something listens there but did not answer in time (a loaded machine, or its connections all
    # taken for a moment): wait for it rather than start a second server per xdist worker.
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 5432
    for _ in range(10):
        if not port_open(host, port):
            break
        time.sleep(3)
        if asyncio.run(postgres_answers(url)):
            return with_database(url, "postgres")
    if os.environ.get("DATABASE_URL"):
        pytest.fail(f"DATABASE_URL is set but nothing answers at {url}")
    return start_embedded_postgres(Path(tmp_path_factory.mktemp("pg")) / "data")


# Every schema of the platform: a session's database is a copy of a template with all of them at
# head, instead of Alembic running each service's migrations again in every test process.
TEMPLATE_PACKAGES = ("usage_ingest", "rating", "invoicing", "payments", "dunning", "notify", "portal")
TEMPLATE_BUILDS = Counter("billing_test_template_builds_total", "Template databases the test harness built (all migrations at head)")


def _migrations_fingerprint() -> str:
    """A digest of every migration file and of the runtime's own code (migrations call its
    helpers): a template is used only by the code that would have built it the same."""
    import hashlib

    from billing_runtime.migrations import migrations_dir

    digest = hashlib.sha256()
    roots = [migrations_dir(package) for package in TEMPLATE_PACKAGES] + [Path(__file__).parent]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


async def _database_exists(server: str, name: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def _admin(server: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _template(server: str) -> str:
    """The name of a database with every service's schema at head, built once per machine and
    migration set (under a file lock: the test processes of this machine build it once)."""
    import fcntl
    import tempfile

    name = f"billing_template_{_migrations_fingerprint()}"
    if asyncio.run(_database_exists(server, name)):
        return name
    with open(Path(tempfile.gettempdir()) / "billing-test-template.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if asyncio.run(_database_exists(server, name)):
            return name
        building = f"{name}_building"
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{building}"', f'CREATE DATABASE "{building}"'))
        from billing_runtime.migrations import migrations_dir, upgrade

        for package in TEMPLATE_PACKAGES:
            upgrade(migrations_dir(package), with_database(server, building))
        # Renamed when complete: a half-built template is never copied.
        asyncio.run(_admin(server, f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
        TEMPLATE_BUILDS.inc()
    return name


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh database for this test session, dropped afterwards: a copy of the template with
    every service's schema at head (`CREATE DATABASE … TEMPLATE`), so `migrate` has nothing to do;
    a plain empty database, migrated as the suites ask, if the template cannot be had."""
    name = f"billing_test_{uuid.uuid4().hex[:10]}"
    url = with_database(postgres_server, name)
    try:
        template = _template(postgres_server)
        asyncio.run(_admin(postgres_server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        _migrated.update((url, package) for package in TEMPLATE_PACKAGES)
    except Exception as exc:  # the server refuses templates (permissions, a copy in use): migrate instead
        warnings.warn(f"no template database ({exc}); migrating the session's database instead", stacklevel=1)
        asyncio.run(ensure_database(url, fresh=True))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(free_port(), Path(tmp_path_factory.mktemp("tansu")) / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: TansuBroker) -> str:
    from billing_runtime.kafka import ensure_topics

    asyncio.run(ensure_topics(kafka_broker.bootstrap))
    return kafka_broker.bootstrap


_migrated: set[tuple[str, str]] = set()


def migrate(database_url: str, *packages: str) -> str:
    """Bring each service package's schema (`"rating"`, `"usage_ingest"`, …) to head in the
    database, once per test process: suites that share a schema (rating's tests post through
    usage-ingest; tests/ops and tests/security migrate all six) do not run Alembic again."""
    from billing_runtime.migrations import migrations_dir, upgrade

    for package in packages:
        if (database_url, package) not in _migrated:
            upgrade(migrations_dir(package), database_url)
            _migrated.add((database_url, package))
    return database_url


@dataclass(frozen=True)
class ServiceUnderTest:
    """What a service's conftest declares once (`service = service_under_test("dunning", …)`), and
    the harness's `migrated`, `settings`, `app` and `client` fixtures build from: the package
    (`<package>.main.build`, `<package>.config.Settings`), the schemas its tests need at head, the
    settings its tests share beyond the database and broker, and whether `client` consumes from
    the broker (False: events reach it through `deliver`)."""

    package: str
    migrations: tuple[str, ...]
    settings: dict[str, Any]
    consume: bool = True

    def settings_class(self) -> Any:
        return importlib.import_module(f"{self.package}.config").Settings

    def build(self, settings: Any) -> FastAPI:
        app: FastAPI = importlib.import_module(f"{self.package}.main").build(settings)
        return app


def service_under_test(package: str, *, migrate: tuple[str, ...] = (), consume: bool = True, **settings: Any) -> Any:
    """A session fixture named `service` for a service's conftest: the harness's `migrated`
    (its schema, and those of `migrate`, at head), `settings` (database, broker and `settings`),
    `app` and `client` (the app served in this process) follow from it, so no conftest repeats them.
    A conftest may still override any of them (rating's `settings` adds its distributor)."""
    declared = ServiceUnderTest(package, (package, *migrate), dict(settings), consume)

    @pytest.fixture(scope="session")
    def service() -> ServiceUnderTest:
        return declared

    return service


@pytest.fixture(scope="session")
def service() -> ServiceUnderTest:
    raise pytest.UsageError("this fixture needs `service = service_under_test(PACKAGE)` in the suite's conftest.py")


@pytest.fixture(scope="module")
def migrated(database_url: str, service: ServiceUnderTest) -> str:
    """The session's database with the service's schemas at head. Per module, not per session:
    a session runs several services' suites, each with its own `service` (`migrate` runs Alembic
    once per schema and process whatever the scope)."""
    return migrate(database_url, *service.migrations)


@pytest.fixture
def settings(migrated: str, kafka_bootstrap: str, service: ServiceUnderTest) -> Any:
    """The service's Settings against the session's database and broker."""
    return service.settings_class()(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, **service.settings)


@pytest.fixture
def app(settings: Any, service: ServiceUnderTest) -> FastAPI:
    return service.build(settings)


def consumes(request: pytest.FixtureRequest, default: bool = True) -> bool:
    """Whether the test's services consume from the broker: `@pytest.mark.consume(False)` on the
    test (or `pytestmark` of its module) says they need not (no JoinGroup to wait for, some 2 s
    a service on Tansu; events, if any, come through `deliver`); else `default`."""
    marker = request.node.get_closest_marker("consume")
    return bool(marker.args[0]) if marker is not None and marker.args else default


@pytest.fixture
async def client(app: FastAPI, service: ServiceUnderTest, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The service in this process, with an HTTP client to it (see `serve`); consuming from the
    broker unless the test says it need not (`consumes`)."""
    async with serve(app, consume=consumes(request, service.consume)) as c:
        yield c


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer, as a peer service publishes (no idempotence: Tansu has none)."""
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await p.start()
    yield p
    await p.stop()


class Publish(Protocol):
    def __call__(self, *events: CloudEvent[Any]) -> Awaitable[None]: ...


async def _send(producer: AIOKafkaProducer, events: Sequence[CloudEvent[Any]], raw_value: bytes | None = None) -> None:
    for event in events:
        message = to_kafka(event)
        value = raw_value if raw_value is not None else message.value
        await producer.send_and_wait(message.topic, value=value, key=message.key, headers=message.headers)


@pytest.fixture
def publish(request: pytest.FixtureRequest) -> Publish:
    """`await publish(*events)`: each event on its topic, keyed and with its headers, acknowledged.
    In a test marked `consume(False)`, handed in process (`deliver`, together) to every service
    the test serves instead, as FastStream's test broker hands a message to its in-process subscribers."""
    if not consumes(request):

        async def hand_over(*events: CloudEvent[Any]) -> None:
            if not _in_process:
                raise RuntimeError("publish() in a test marked consume(False) hands events to the apps it serves: none is served")
            for runtime in list(_in_process):
                await deliver(runtime, *events)

        return hand_over
    producer: AIOKafkaProducer = request.getfixturevalue("producer")

    async def send(*events: CloudEvent[Any]) -> None:
        await _send(producer, events)

    return send


async def publish_events(to: str | httpx.AsyncClient, *events: CloudEvent[Any], raw_value: bytes | None = None) -> None:
    """`publish` for a helper that is no fixture, told where the events go: `to` a bootstrap
    address, each event on its topic through a producer of its own, in order, acknowledged
    (`raw_value`: sent as every event's value instead, a poison message under valid headers); `to`
    a client `serve` gave in a test marked `consume(False)`, the events handed to that service
    together (`deliver`: one polled batch per partition), as its consumer would have them."""
    if isinstance(to, httpx.AsyncClient):
        if raw_value is not None:
            raise ValueError("a raw value is a message on the broker: publish it to a bootstrap address")
        await deliver(to, *events)
        return
    producer = AIOKafkaProducer(bootstrap_servers=to, enable_idempotence=False)
    await producer.start()
    try:
        await _send(producer, events, raw_value)
    finally:
        await producer.stop()


def tenant_headers(tenant: str, **extra: str) -> dict[str, str]:
    """The headers of a request made as `tenant` in a service suite: named in `X-Tenant-Id`, as
    the authenticating gateway would (the suites run with AUTH_MODE=trusted_header), and `extra`
    (e.g. `**{"Idempotency-Key": key}`)."""
    return {"X-Tenant-Id": tenant, **extra}


def api_key_headers(key: str, **extra: str) -> dict[str, str]:
    """The headers of a request made with API key `key` (AUTH_MODE=api_key), and `extra`."""
    return {"Authorization": f"Bearer {key}", **extra}


@pytest.fixture
def tenant() -> str:
    """A partner tenant of its own per test, so that tests sharing a database never see each other's rows."""
    return f"partner-{uuid.uuid4().hex[:8]}"


# The answer given is truthy, so never None: a probe typed `X | None` gives an `X`.
@overload
async def eventually(probe: Callable[[], Awaitable[T | None]], what: str = ..., timeout: float = ..., interval: float = ...) -> T: ...
@overload
async def eventually(probe: Callable[[], T | None], what: str = ..., timeout: float = ..., interval: float = ...) -> T: ...
async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], what: str = "the expected effect", timeout: float = 90.0, interval: float = 0.05
) -> T:
    """Call `probe()` (awaiting its answer if it is awaitable) until it answers something truthy,
    and give that answer; fail naming `what` (and the last answer) after `timeout` seconds. The
    one poll-until helper of every suite: a test waits on a state it can observe, never on a
    fixed sleep. The timeout is generous (a loaded machine); the interval short, so a fast effect
    costs no fixed wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = probe()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last answer: {answer!r}")
        await asyncio.sleep(interval)


def eventually_sync(probe: Callable[[], T | None], what: str = "the expected effect", timeout: float = 90.0, interval: float = 0.25) -> T:
    """`eventually` for a synchronous test (the end-to-end tests drive the platform over HTTP from
    plain functions): the first truthy answer of `probe()`, or fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached in {timeout}s; last: {last!r}")


_in_process: list[Any] = []
"""The runtimes served now without a broker consumer: what `publish` hands events to in a test
marked `consume(False)`."""
_test_consumes = True
"""The running test's `consume` marker (True unless marked): the default of `serve`."""


@pytest.fixture(autouse=True)
def _consume_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    global _test_consumes
    _test_consumes = consumes(request)
    yield
    _test_consumes = True


@contextlib.asynccontextmanager
async def serve(app: FastAPI, *, consume: bool | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Run a service app in this process (lifespan included: relay and consumers) and give an
    HTTP client to it, once its consumer has its partitions (nothing published after is missed).
    `consume=False`: no broker consumer (no JoinGroup to wait for); the test hands events to the
    service with `deliver(app, event)` (or `publish`). The relay still publishes what the service
    emits. By default, as the running test's `consume` marker says (True unless marked)."""
    async with serve_all({"app": app}, consume=consume) as clients:
        yield clients["app"]


def _forget_in_process(runtimes: Sequence[Any]) -> None:
    for runtime in runtimes:
        if runtime in _in_process:
            _in_process.remove(runtime)


class _Lifespan:
    """An app's lifespan held open by a task of its own, so that several apps start side by side:
    each start waits on the broker and the database (a producer's metadata, the key topic read to
    its end in `AUTH_MODE=api_key`: half a second of fetch wait or more per service), and those
    waits overlap instead of adding up. Entered and left in that one task, as a lifespan must be."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.started = asyncio.Event()
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _hold(self) -> None:
        async with self.app.router.lifespan_context(self.app):
            self.started.set()
            await self.stopping.wait()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._hold(), name=f"lifespan-{self.app.title}")
        waiting = asyncio.ensure_future(self.started.wait())
        await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not self.started.is_set():
            self.task.result()  # the start's failure, raised here
            raise RuntimeError(f"{self.app.title}'s lifespan ended before it started")

    async def stop(self) -> None:
        if self.task is None:
            return
        self.stopping.set()
        await self.task


async def _stop_side_by_side(held: list[_Lifespan]) -> None:
    """Stop the apps at once (each waits on its consumer leaving its group, its relay, its
    producer); every one is stopped, and the first failure is raised after."""
    results = await asyncio.gather(*(h.stop() for h in held), return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise failures[0]


async def _start_side_by_side(stack: contextlib.AsyncExitStack, apps: Sequence[FastAPI]) -> None:
    """Start every app's lifespan at once; stopped side by side when `stack` closes. If one
    fails to start, those that started are stopped and the first failure is raised."""
    held = [_Lifespan(app) for app in apps]
    results = await asyncio.gather(*(h.start() for h in held), return_exceptions=True)
    started = [h for h, result in zip(held, results, strict=True) if not isinstance(result, BaseException)]
    stack.push_async_callback(_stop_side_by_side, started)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        raise failures[0]


@contextlib.asynccontextmanager
async def serve_all(apps: dict[str, FastAPI], *, consume: bool | None = None) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """`serve` for several apps at once: started side by side (each start waits on the broker,
    and those waits overlap), then their consumers wait for their partitions side by side (Tansu
    answers each JoinGroup only after half the session timeout), so six services start in about
    the time of one; stopped side by side, after their clients. A single app starts and stops in
    the calling task."""
    runtimes = [runtime for app in apps.values() if (runtime := getattr(app.state, "runtime", None)) is not None]
    consume = _test_consumes if consume is None else consume
    for runtime in runtimes:
        runtime.consume_from_broker = consume
    async with contextlib.AsyncExitStack() as stack:
        if not consume:
            _in_process.extend(runtimes)
            stack.callback(_forget_in_process, runtimes)
        clients: dict[str, httpx.AsyncClient] = {}
        if len(apps) > 1:
            await _start_side_by_side(stack, list(apps.values()))
        for name, app in apps.items():
            if len(apps) == 1:
                await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients[name] = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://service"))
            _served_apps[clients[name]] = app
        await asyncio.gather(*(runtime.wait_consuming() for runtime in runtimes))
        yield clients


@contextlib.asynccontextmanager
async def serve_on_port(app: FastAPI) -> AsyncIterator[str]:
    """Run a service app in uvicorn on a free local port, in a task of this event loop (lifespan
    included), and give its base URL: for a caller outside this process's ASGI transport, such as
    a provider sandbox posting webhooks to it. Stopped, its lifespan ended, on leaving."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit as exit_:  # uvicorn's answer to a lifespan that failed: it would stop the event loop
            raise RuntimeError(f"{app.title} failed to start (uvicorn exit {exit_.code}; its error is logged above)") from None

    task = asyncio.create_task(run())
    try:
        while not server.started:
            if task.done():
                task.result()  # the start's failure, raised here
                raise RuntimeError(f"{app.title} stopped before it started serving")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _keep_if_matching(message: Any, match: Callable[[CloudEvent[Any]], bool], seen: list[CloudEvent[Any]]) -> None:
    """Decode a polled record as the event its type names and keep it if it `match`es; records of
    no known type, and poison messages some test sent on purpose, are skipped."""
    headers = list(message.headers or [])
    if is_batch(headers):  # batched content mode: each of its events (billing_events.to_kafka_batch)
        try:
            elements = batch_elements(message.value or b"")
        except EnvelopeError:
            return
        for element in elements:
            named = element.get("type") if isinstance(element, dict) else None
            known = model_for(named) if isinstance(named, str) else None
            if known is None:
                continue
            try:
                one = from_structured(element, known)
            except EnvelopeError:
                continue
            if match(one):
                seen.append(one)
        return
    model = model_for(attributes_from_headers(headers).get("type", ""))
    if model is None:
        return
    try:
        event = from_kafka(headers, message.value or b"", model)
    except EnvelopeError:
        return
    if match(event):
        seen.append(event)


async def read_events(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[CloudEvent[Any]]], bool],
    match: Callable[[CloudEvent[Any]], bool] = lambda e: True,
    timeout: float = 20.0,
) -> list[CloudEvent[Any]]:
    """Read `topic` from the beginning, decoding known events that `match`, until `until(seen)`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[CloudEvent[Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(seen):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"only {len(seen)} matching events on {topic} after {timeout}s")
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    _keep_if_matching(message, match, seen)
        return seen
    finally:
        await consumer.stop()


async def dead_lettered(bootstrap: str, event_id: str, *, service: str | None = None, timeout: float = 20.0) -> dict[str, str]:
    """The headers (decoded) of event `event_id`'s copy on the dead-letter topic, as soon as it is
    there (`service`: the one that set it aside), read raw: `read_events` would choke on a poison."""
    consumer = AIOKafkaConsumer(DEAD_LETTER.name, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    found = {name: value.decode() for name, value in message.headers or []}
                    if found.get("ce_id") == event_id and service in (None, found.get("dlq_service")):
                        return found
        raise TimeoutError(f"event {event_id} was not dead-lettered within {timeout}s")
    finally:
        await consumer.stop()


async def every_record(bootstrap: str, topics: Sequence[str] | None = None) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topics` (every topic the broker has, unless named), raw, published before
    this call (`fenced_records`): for a test that looks for bytes anywhere on the broker (a secret
    that must not be there), events or not."""
    if topics is None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            topics = sorted(name for name in await consumer.topics() if not name.startswith("__"))
        finally:
            await consumer.stop()
    return await fenced_records(bootstrap, *topics)


async def fenced_records(bootstrap: str, *topics: str, timeout: float = 60.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topics` published before this call, undecoded, and nothing less: a fence
    record (no event type, so every consumer skips it) is written to each partition first, and the
    topics are read until each fence is seen. A test proves "exactly once on the topic", or "none",
    with it instead of reading for a while in case a late one shows up (Tansu's end offsets cannot
    be trusted for the same purpose). What a service has yet to publish is not there: wait for
    `outbox_drained` first."""
    fence = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        partitions = {(topic, p) for topic in topics for p in (await producer.partitions_for(topic) or ())}
        await asyncio.gather(*[await producer.send(topic, value=b"", partition=p, headers=[("test_fence", fence)]) for topic, p in sorted(partitions)])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    fenced: set[tuple[str, int]] = set()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(fenced) < len(partitions):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the fences on {len(partitions) - len(fenced)} partitions of {', '.join(topics)} not read after {timeout}s")
            for messages in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                for message in messages:
                    where = (message.topic, message.partition)
                    if ("test_fence", fence) in list(message.headers or []):
                        fenced.add(where)
                    elif where not in fenced:
                        records.append(message)
        return records
    finally:
        await consumer.stop()


async def all_events(bootstrap: str, topic: str, *, match: Callable[[CloudEvent[Any]], bool] = lambda e: True, timeout: float = 60.0) -> list[CloudEvent[Any]]:
    """Every known event on `topic` that `match`es, published before this call, and nothing
    less (`fenced_records`, decoded; records of no known type are skipped)."""
    seen: list[CloudEvent[Any]] = []
    for record in await fenced_records(bootstrap, topic, timeout=timeout):
        _keep_if_matching(record, match, seen)
    return seen


async def outbox_drained(runtime: Any) -> bool:
    """Whether the service's relay has published every outbox row (none unsent): with
    `all_events` after it, what the service will ever publish of what it has done so far is
    known without waiting."""
    from sqlalchemy import func, select

    from billing_runtime.outbox import pending_of

    table = runtime.outbox_table
    pending = pending_of(table)  # the unsent rows' ids, when the service keeps them apart
    query = select(func.count()).select_from(table).where(table.c.sent_at.is_(None)) if pending is None else select(func.count()).select_from(pending)
    async with runtime.engine.connect() as conn:
        return not await conn.scalar(query)


# -- in-process delivery ------------------------------------------------------------------------


@dataclass
class DeadLetter:
    """A dead letter the in-process dispatch handed over: the event's id and the `dlq_*` headers."""

    event_id: str
    topic: str
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        return self.headers.get("dlq_code")

    @property
    def error(self) -> str:
        return self.headers.get("dlq_error", "")


class _DeadLetterSink:
    """What `deliver` gives the dispatch in place of a producer for its dead letters: they are kept
    for the test to read (as FastStream's test broker keeps what a handler publishes) instead of
    going to `billing.deadletter`. Nothing else is ever sent through it."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(
        self, topic: str, *, value: bytes | None = None, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[None]:
        decoded = {name: raw.decode() for name, raw in headers or []}
        self.letters.append(DeadLetter(decoded.get("ce_id", ""), topic, decoded))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass
class Delivery:
    """What the service's inbox made of the events `deliver` handed it, read back from its inbox
    rows: event ids applied now, already there before (`duplicates`: applied earlier, nothing
    changed), and dead-lettered now (with the dead letter each produced)."""

    applied: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    dead_lettered: list[DeadLetter] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Events of a type the service does not route (another service's business on the topic)."""

    @property
    def codes(self) -> list[str | None]:
        return [letter.code for letter in self.dead_lettered]


_offsets: dict[tuple[str, str, int], itertools.count[int]] = {}


_partitioner = CachedPartitioner()


def _partition_of(key: bytes, partitions: int) -> int:
    """The partition the services' producers put `key` on."""
    every = list(range(partitions))
    return _partitioner(key, every, every)


def _records(service: str, events: tuple[CloudEvent[Any], ...]) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """The events as the broker would hand them to one consumer: on the partition their key
    hashes to (as the producer's partitioner puts them), in the order given, with offsets that
    grow per partition; one polled batch per partition."""
    from billing_events.topics import ALL_TOPICS

    partitions = {topic.name: topic.partitions for topic in ALL_TOPICS}
    batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    for event in events:
        message = to_kafka(event)
        tp = TopicPartition(message.topic, _partition_of(message.key, partitions.get(message.topic, 1)))
        offset = next(_offsets.setdefault((service, tp.topic, tp.partition), itertools.count()))
        batches.setdefault(tp, []).append(record_of(message, tp, offset, timestamp_ms=int(event.time.timestamp() * 1000)))
    return batches


def record_of(message: KafkaMessage, tp: TopicPartition, offset: int, *, timestamp_ms: int = 0) -> ConsumerRecord[bytes, bytes]:
    """`message` as a consumer reads it back from partition `tp` at `offset`."""
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=message.key,
        value=message.value,
        checksum=None,
        serialized_key_size=len(message.key),
        serialized_value_size=len(message.value),
        headers=tuple(message.headers),
    )


async def _inbox_statuses(runtime: Any, ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    table = runtime.inbox_table
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(select(table.c.event_id, table.c.status).where(table.c.event_id.in_(ids)))
        return {event_id: status for event_id, status in rows}


_served_apps: weakref.WeakKeyDictionary[httpx.AsyncClient, FastAPI] = weakref.WeakKeyDictionary()
"""The app behind each client `serve` gave, so `deliver(client, …)` finds its service."""


def _runtime_of(target: Any) -> Any:
    if isinstance(target, httpx.AsyncClient):
        if target not in _served_apps:
            raise TypeError("deliver(client, …) takes a client given by serve() or the `client` fixture")
        target = _served_apps[target]
    return getattr(getattr(target, "state", None), "runtime", target)


async def deliver(target: Any, *events: CloudEvent[Any]) -> Delivery:
    """Hand `events` to a service in this process, through the runtime's own dispatch
    (`ServiceRuntime.inbox_consumer().apply_batch`: inbox insert, one transaction per partition's
    batch, the handlers, poison isolation, dead letters), without the broker: the way FastStream's
    `TestKafkaBroker` delivers to its subscribers. `target` is a `ServiceRuntime`, an app built on
    one (served with `serve(app, consume=False)`, or not started at all) or a client `serve` gave. Events of one
    partition are one batch, in the order given. Returns what the inbox made of them; dead letters
    are kept in it instead of being published. The broker path stays under test in
    libs/billing-runtime and the end-to-end suites."""
    runtime = _runtime_of(target)
    ids = [event.id for event in events]
    before = await _inbox_statuses(runtime, ids)
    sink = _DeadLetterSink()
    consumer = runtime.inbox_consumer(producer=sink)
    with DELIVER_SECONDS.time():
        for tp, records in _records(runtime.name, events).items():
            await consumer.apply_batch(tp, records)
    after = await _inbox_statuses(runtime, ids)
    delivery = Delivery()
    letters = {letter.event_id: letter for letter in sink.letters}
    for event in events:
        if event.type not in runtime.routes:
            delivery.skipped.append(event.id)
        elif event.id in before:
            delivery.duplicates.append(event.id)
        elif after.get(event.id) == "dead_lettered":
            delivery.dead_lettered.append(letters.get(event.id) or DeadLetter(event.id, "", {}))
        elif event.id in after:
            delivery.applied.append(event.id)
    DELIVERED.inc(len(events))
    return delivery
