from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from billing_runtime.testing import migrate, serve
from dunning.config import Settings
from dunning.main import build

# Tests run in importlib mode (no sys.path change); the shared helpers module sits beside this file
# under a name no other service's tests use.
sys.path.insert(0, str(Path(__file__).parent))

# Ten days after the worked example's due date (2026-12-05).
TODAY = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    return migrate(database_url, "dunning")


@pytest.fixture
def settings(migrated: str, kafka_bootstrap: str) -> Settings:
    return Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, clock_fixed_at=TODAY)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(build(settings)) as c:
        yield c
