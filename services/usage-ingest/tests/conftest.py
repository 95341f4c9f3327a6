from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import ProductPublished, new_event
from billing_runtime.db import create_engine
from billing_runtime.testing import migrate, serve
from usage_ingest.catalogue.consumers import on_product_published
from usage_ingest.config import Settings
from usage_ingest.main import build

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
async def products(migrated: str) -> AsyncIterator[Products]:
    """`await products(seller, *codes, allows_credits=…, wholesale=…)`: rating's ProductPublished of
    each code delivered in process to usage-ingest's consumer handler (its inbox's transaction
    aside), as if rating had published them. The broker path has its own test (test_catalogue)."""
    engine = create_engine(migrated, pool_size=1)

    async def deliver(seller: str, *codes: str, **knobs: Any) -> None:
        async with AsyncSession(engine) as session, session.begin():
            for code in codes:
                await on_product_published(session, new_event(product_event(seller, code, **knobs), source="rating", tenant=seller))

    yield deliver
    await engine.dispose()
