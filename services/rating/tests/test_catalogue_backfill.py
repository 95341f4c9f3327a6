"""Migration 0006: products stored before rating published its catalogue are published once, as
put_product would have published them, so a usage-ingest that starts with an empty projection
learns them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from billing_events import ProductPublished, from_kafka
from billing_runtime.db import create_engine
from billing_runtime.embedded import drop_database, ensure_database, with_database
from billing_runtime.migrations import migrations_dir, upgrade


async def _sql(url: str, statement: str) -> list[Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


def test_products_stored_before_0006_are_published_once(postgres_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = with_database(postgres_server, f"billing_backfill_{uuid.uuid4().hex[:10]}")
    asyncio.run(ensure_database(url, fresh=True))
    monkeypatch.setenv("RATING_DISTRIBUTOR_ID", "dist-old")
    try:
        upgrade(migrations_dir("rating"), url, "0005")
        asyncio.run(
            _sql(
                url,
                """
            INSERT INTO rating.product (seller_id, code, name, quantity_rule, kind, policy, updated_at) VALUES
              ('dist-old', 'AZ-VM', 'Azure VM', 'usage_sum', 'usage', '{"allows_credits": true}', '2026-09-01T00:00:00Z'),
              ('partner-old', 'SUP', 'Support', 'contracted', 'recurring', NULL, '2026-09-02T00:00:00Z')
        """,
            )
        )
        upgrade(migrations_dir("rating"), url)
        rows = asyncio.run(_sql(url, "SELECT headers, value FROM rating.outbox WHERE event_type = 'billing.product.published.v1' ORDER BY id"))
        events = [from_kafka([(k, v.encode()) for k, v in headers], bytes(value), ProductPublished) for headers, value in rows]
        assert [(e.tenant, e.data.product_code, e.data.revision, e.data.allows_credits, e.data.wholesale) for e in events] == [
            ("dist-old", "AZ-VM", 1, True, True),
            ("partner-old", "SUP", 1, False, False),
        ]
        assert asyncio.run(_sql(url, "SELECT revision FROM rating.product ORDER BY code")) == [(1,), (1,)]
    finally:
        asyncio.run(drop_database(url))
