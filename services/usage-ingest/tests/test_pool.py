"""usage-ingest pools as many connections as partners have batches in flight (see README: a pool
that overflowed churned connections and stalled the relay)."""

from __future__ import annotations

import pytest

from billing_runtime.config import CommonSettings
from billing_runtime.service import ServiceRuntime
from usage_ingest.config import Settings
from usage_ingest.db import metadata


def test_usage_ingest_pools_32_connections_where_the_runtime_pools_10(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)
    monkeypatch.delenv("USAGE_INGEST_DATABASE_POOL_SIZE", raising=False)
    assert (CommonSettings().database_pool_size, Settings().database_pool_size) == (10, 32)
    assert ServiceRuntime("usage-ingest", Settings(), metadata).engine.pool.size() == 32  # type: ignore[attr-defined]
    monkeypatch.setenv("USAGE_INGEST_DATABASE_POOL_SIZE", "12")
    assert ServiceRuntime("usage-ingest", Settings(), metadata).engine.pool.size() == 12  # type: ignore[attr-defined]
