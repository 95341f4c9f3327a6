from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from billing_runtime.migrations import migrations_dir, upgrade
from billing_runtime.testing import serve
from usage_ingest.config import Settings
from usage_ingest.main import build


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    upgrade(migrations_dir("usage_ingest"), database_url)
    return database_url


@pytest.fixture
def settings(migrated: str, kafka_bootstrap: str) -> Settings:
    return Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(build(settings)) as c:
        yield c


@pytest.fixture
def tenant() -> str:
    return f"partner-{uuid.uuid4().hex[:8]}"
