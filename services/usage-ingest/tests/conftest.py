from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import httpx
import pytest

from billing_events import ProductPublished, new_event
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import migrate, serve
from usage_ingest.catalogue.consumers import HANDLERS
from usage_ingest.config import Settings
from usage_ingest.db import metadata
from usage_ingest.main import SERVICE, build

Products = Callable[..., Awaitable[None]]


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    return migrate(database_url, "usage_ingest")


@pytest.fixture
def settings(migrated: str, kafka_bootstrap: str) -> Settings:
    return Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(build(settings)) as c:
        yield c


def product_event(seller: str, code: str, *, allows_credits: bool = False, wholesale: bool = False, revision: int = 1) -> ProductPublished:
    return ProductPublished(
        seller_id=seller,
        product_code=code,
        name=code.title(),
        quantity_rule="usage_sum",
        kind="usage",
        allows_credits=allows_credits,
        wholesale=wholesale,
        revision=revision,
        updated_at=datetime(2026, 10, 1, tzinfo=UTC),
    )


@pytest.fixture
async def products(settings: Settings) -> AsyncIterator[Products]:
    """`await products(seller, *codes, allows_credits=…, wholesale=…)`: rating's ProductPublished of
    each code delivered in process to usage-ingest's consumer handler (its inbox's transaction
    aside), as if rating had published them. The broker path has its own test (test_catalogue)."""
    runtime = ServiceRuntime(SERVICE, settings, metadata)

    async def deliver(seller: str, *codes: str, **knobs: bool | int) -> None:
        async with runtime.transaction() as session:
            for code in codes:
                await HANDLERS[ProductPublished](runtime, session, new_event(product_event(seller, code, **knobs), source="rating", tenant=seller))

    yield deliver
    await runtime.engine.dispose()
