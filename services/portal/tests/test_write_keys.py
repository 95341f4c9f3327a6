"""A brand edit's write key outlives its call only if its request died: the sweeper revokes it
(registry row, ApiKeyRevoked in the outbox, the ledger row) and counts it for the alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text

from billing_runtime.auth import api_key_table, ensure_registry, generate_key, register
from billing_runtime.testing import migrate
from portal import db
from portal.config import Settings
from portal.main import build
from portal.partner_pages import WRITE_KEYS_SWEPT, sweep_write_keys

NOW = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    return migrate(database_url, "portal")


async def test_a_left_over_write_key_is_revoked_and_a_live_one_is_not(migrated: str) -> None:
    database_url = migrated
    app = build(Settings(database_url=database_url, kafka_bootstrap_servers="127.0.0.1:1", clock_fixed_at=NOW, secret_key="k" * 64))
    runtime = app.state.runtime
    left, live = generate_key("acme-it", "write"), generate_key("acme-it", "write")
    async with runtime.engine.begin() as conn:
        await ensure_registry(conn)
        for key, issued in ((left, NOW - timedelta(minutes=6)), (live, NOW - timedelta(seconds=20))):
            await register(conn, key, label="portal brand edit by adam@acme.example", now=issued)
            await conn.execute(insert(db.write_key).values(key_id=key.key_id, tenant=key.tenant, issued_at=issued))
    before = WRITE_KEYS_SWEPT._value.get()
    try:
        async with runtime.transaction() as session:
            assert await sweep_write_keys(runtime, session) == 1
        async with runtime.transaction() as session:
            assert await sweep_write_keys(runtime, session) == 0  # done once
        async with runtime.engine.connect() as conn:
            revoked = dict(
                (
                    await conn.execute(select(api_key_table.c.key_id, api_key_table.c.revoked_at).where(api_key_table.c.key_id.in_([left.key_id, live.key_id])))
                ).all()
            )
            ledger = dict(
                (
                    await conn.execute(select(db.write_key.c.key_id, db.write_key.c.revoked_at).where(db.write_key.c.key_id.in_([left.key_id, live.key_id])))
                ).all()
            )
            events = (
                await conn.execute(
                    text("SELECT count(*) FROM portal.outbox WHERE event_type LIKE '%revoked%' AND convert_from(value, 'UTF8') LIKE :k"),
                    {"k": f"%{left.key_id}%"},
                )
            ).scalar()
        assert revoked == {left.key_id: NOW, live.key_id: None} and ledger == {left.key_id: NOW, live.key_id: None}
        assert events == 1 and WRITE_KEYS_SWEPT._value.get() == before + 1
    finally:
        await runtime.engine.dispose()
