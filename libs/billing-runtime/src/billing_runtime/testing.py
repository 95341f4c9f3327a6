"""The shared test harness: pytest fixtures for integration tests against real servers
(PostgreSQL: the one on 127.0.0.1:5432 or `DATABASE_URL`, else an embedded one; a Tansu broker),
and the helpers every suite uses: `serve` / `serve_all` (a service app in this process),
`eventually` (poll until a probe answers), `migrate` (a service's schema at head, once a session),
`publish` / `read_events` (the broker, as a peer service sees it).

Loaded automatically (a pytest11 entry point) wherever billing-runtime is installed. Every fixture
is worker-safe under pytest-xdist: each worker has its own database, broker and random ports.

Fixtures: `postgres_server`, `database_url`, `kafka_broker`, `kafka_bootstrap`, `producer`,
`publish`, `tenant` (a conftest may override any of them, e.g. with another tenant prefix), and
the autouse `own_consumer_groups`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from billing_events import CloudEvent, EnvelopeError, attributes_from_headers, from_kafka, model_for, to_kafka
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

DEFAULT_TEST_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    # Tansu answers a JoinGroup only after half the session timeout (it waits for other members),
    # and every test's services join groups of their own: keep it short, but not so short that a
    # busy test process misses its heartbeats and is expelled.
    os.environ.setdefault("CONSUMER_SESSION_TIMEOUT_MS", "3000")
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


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    url = with_database(postgres_server, f"billing_test_{uuid.uuid4().hex[:10]}")
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


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer, as a peer service publishes (no idempotence: Tansu has none)."""
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await p.start()
    yield p
    await p.stop()


Publish = Callable[[CloudEvent[Any]], Awaitable[None]]


@pytest.fixture
def publish(producer: AIOKafkaProducer) -> Publish:
    """`await publish(event)`: the event on its topic, keyed and with its headers, acknowledged."""

    async def send(event: CloudEvent[Any]) -> None:
        message = to_kafka(event)
        await producer.send_and_wait(message.topic, value=message.value, key=message.key, headers=message.headers)

    return send


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


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run a service app in this process (lifespan included: relay and consumers) and give an
    HTTP client to it, once its consumer has its partitions (nothing published after is missed)."""
    async with serve_all({"app": app}) as clients:
        yield clients["app"]


@contextlib.asynccontextmanager
async def serve_all(apps: dict[str, FastAPI]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """`serve` for several apps at once: started one after the other, then their consumers wait
    for their partitions side by side (Tansu answers each JoinGroup only after half the session
    timeout), so six services start in about the time of one. Stopped in reverse order."""
    runtimes = [runtime for app in apps.values() if (runtime := getattr(app.state, "runtime", None)) is not None]
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            clients[name] = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://service"))
        await asyncio.gather(*(runtime.wait_consuming() for runtime in runtimes))
        yield clients


def _keep_if_matching(message: Any, match: Callable[[CloudEvent[Any]], bool], seen: list[CloudEvent[Any]]) -> None:
    """Decode a polled record as the event its type names and keep it if it `match`es; records of
    no known type, and poison messages some test sent on purpose, are skipped."""
    headers = list(message.headers or [])
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


async def all_events(bootstrap: str, topic: str, *, match: Callable[[CloudEvent[Any]], bool] = lambda e: True, timeout: float = 60.0) -> list[CloudEvent[Any]]:
    """Every known event on `topic` that `match`es, published before this call, and nothing
    less: a fence record (no event type, so every consumer skips it) is written to each partition
    first, and the topic is read until each fence is seen. A test proves "exactly once on the
    topic" with it instead of reading for a while in case a late duplicate shows up (Tansu's end
    offsets cannot be trusted for the same purpose)."""
    fence = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        await asyncio.gather(*[await producer.send(topic, value=b"", partition=p, headers=[("test_fence", fence)]) for p in partitions])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: list[CloudEvent[Any]] = []
    fenced: set[int] = set()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(fenced) < len(partitions):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the fences on {len(partitions) - len(fenced)} partitions of {topic} not read after {timeout}s")
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    headers = list(message.headers or [])
                    if ("test_fence", fence) in headers:
                        fenced.add(message.partition)
                        continue
                    _keep_if_matching(message, match, seen)
        return seen
    finally:
        await consumer.stop()


async def outbox_drained(runtime: Any) -> bool:
    """Whether the service's relay has published every outbox row (none unsent): with
    `all_events` after it, what the service will ever publish of what it has done so far is
    known without waiting."""
    from sqlalchemy import func, select

    table = runtime.outbox_table
    async with runtime.engine.connect() as conn:
        return not await conn.scalar(select(func.count()).select_from(table).where(table.c.sent_at.is_(None)))
