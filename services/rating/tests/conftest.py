from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from billing_runtime.testing import eventually, migrate, serve
from rating.config import Settings
from rating.main import build

# A day after October 2026 has ended, so that October can be closed and November cannot.
TODAY = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    # The worked examples are posted through usage-ingest, as partners do.
    return migrate(database_url, "rating", "usage_ingest")


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
async def ingest(migrated: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    """usage-ingest, in this process, with its own clock (tests set the day an order is received)."""
    from usage_ingest.config import Settings as IngestSettings
    from usage_ingest.main import build as build_ingest

    ingest_app = build_ingest(IngestSettings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, clock_fixed_at=TODAY))
    async with serve(ingest_app) as c:
        c.app_clock = ingest_app.state.runtime.clock  # type: ignore[attr-defined]  # the tests set usage-ingest's day through its client
        yield c


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return build(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as c:
        yield c


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
