from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from billing_runtime.testing import migrate, serve
from usage_ingest.config import Settings
from usage_ingest.main import build


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
