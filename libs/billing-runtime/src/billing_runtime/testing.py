"""pytest fixtures for integration tests against real servers: PostgreSQL (the one on
127.0.0.1:5432 or `DATABASE_URL`, else an embedded one), a Tansu broker, an SMTP server.

Loaded automatically (a pytest11 entry point) wherever billing-runtime is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from billing_events import CloudEvent, EnvelopeError, attributes_from_headers, from_kafka, model_for
from billing_runtime.embedded import (
    TansuBroker,
    drop_database,
    ensure_database,
    free_port,
    postgres_answers,
    start_embedded_postgres,
    with_database,
)

DEFAULT_TEST_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


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


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run a service app in this process (lifespan included: relay and consumers) and give an
    HTTP client to it."""
    async with app.router.lifespan_context(app):
        runtime = getattr(app.state, "runtime", None)
        if runtime is not None:
            await runtime.wait_consuming()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


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
                    headers = list(message.headers or [])
                    model = model_for(attributes_from_headers(headers).get("type", ""))
                    if model is None:
                        continue
                    try:
                        event = from_kafka(headers, message.value or b"", model)
                    except EnvelopeError:
                        continue  # a poison message some test sent on purpose
                    if match(event):
                        seen.append(event)
        return seen
    finally:
        await consumer.stop()
