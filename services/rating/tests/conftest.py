from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from billing_events import CloudEvent, EventData, new_event, to_kafka
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import consumes, eventually, serve_all, service_under_test
from rating.config import Settings
from rating.db import metadata

# A day after October 2026 has ended, so that October can be closed and November cannot.
TODAY = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


# The harness's `migrated` and `app` (billing_runtime.testing) follow from it; `settings` is this
# suite's own (a distributor per test), and so are `client` and `ingest` (served together). The worked examples are posted through
# usage-ingest, as partners do: its schema too.
service = service_under_test("rating", migrate=("usage_ingest",))


@pytest.fixture
def distributor() -> str:
    """A distributor tenant of its own per test, so that catalogues of tests never mix."""
    return f"dist-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(migrated: str, kafka_bootstrap: str, distributor: str) -> Settings:
    return Settings(
        database_url=migrated,
        kafka_bootstrap_servers=kafka_bootstrap,
        clock_fixed_at=TODAY,
        distributor_id=distributor,
        scheduler_enabled=False,  # tests call run_due with the instant they mean
    )


@pytest.fixture
async def served(request: pytest.FixtureRequest, app: FastAPI, migrated: str, kafka_bootstrap: str) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """rating (`client`) and usage-ingest (`ingest`), whichever of the two the test asks for,
    served together: their consumers join their groups side by side (some 2 s each on Tansu)
    instead of one after the other."""
    from usage_ingest.config import Settings as IngestSettings
    from usage_ingest.main import build as build_ingest

    apps: dict[str, FastAPI] = {}
    if "client" in request.fixturenames:
        apps["client"] = app
    if "ingest" in request.fixturenames:
        apps["ingest"] = build_ingest(IngestSettings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, clock_fixed_at=TODAY))
    async with serve_all(apps, consume=consumes(request)) as clients:
        if "ingest" in clients:
            clients["ingest"].app_clock = apps["ingest"].state.runtime.clock  # type: ignore[attr-defined]
        yield clients


@pytest.fixture
async def runtime(migrated: str, distributor: str) -> AsyncIterator[ServiceRuntime]:
    """rating's runtime in this process, without Kafka or HTTP: what it emits stays in the outbox."""
    settings = Settings(database_url=migrated, clock_fixed_at=TODAY, distributor_id=distributor, scheduler_enabled=False)
    runtime = ServiceRuntime("rating", settings, metadata)
    yield runtime
    await runtime.engine.dispose()


@pytest.fixture
def client(served: dict[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    """rating, in this process (see `served`)."""
    return served["client"]


@pytest.fixture
def ingest(served: dict[str, httpx.AsyncClient]) -> httpx.AsyncClient:
    """usage-ingest, in this process, with its own clock (tests set the day an order is received)."""
    return served["ingest"]


async def ordered(ingest: httpx.AsyncClient, *, headers: dict[str, str], json: dict[str, Any]) -> dict[str, Any]:
    """Orders posted right after their products: usage-ingest hears of a product from rating's
    event a moment after the PUT and refuses an order of it until then (`unknown_product`, nothing
    stored), so the batch is posted again until it is accepted, as a partner would."""

    async def accepted() -> dict[str, Any] | None:
        body: dict[str, Any] = (await ingest.post("/v1/orders", headers=headers, json=json)).json()
        if any(r["code"] == "unknown_product" for r in body["results"]):
            return None
        return body

    body = await eventually(accepted, "usage-ingest to know the ordered products", interval=0.1)
    assert body["rejected"] == 0 and body["conflict"] == 0, body
    return body


def at(text: str) -> datetime:
    """A naive ISO time read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def published(producer: AIOKafkaProducer, tenant: str, data: EventData, event_id: str | None = None) -> CloudEvent[Any]:
    """`data` sent as usage-ingest sends it (its own event id unless `event_id`), acknowledged."""
    event = new_event(data, source="usage-ingest", tenant=tenant, event_id=event_id or str(uuid.uuid4()))
    message = to_kafka(event)
    await producer.send_and_wait(message.topic, value=message.value, key=message.key, headers=message.headers)
    return event
