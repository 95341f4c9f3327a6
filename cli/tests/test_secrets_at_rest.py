"""Secrets at rest across versions and keys: the migrations seal what an older version stored in
the clear (and redact it in old audit rows), and `billing secrets rotate` moves every sealed
secret to the current key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from typer.testing import CliRunner

from billing_cli.main import app
from billing_runtime.crypto import Keyring, new_key
from billing_runtime.db import async_url
from billing_runtime.embedded import drop_database, ensure_database, with_database
from billing_runtime.migrations import migrations_dir, upgrade
from notify.webhook import repository as notify_repo
from notify.webhook.models import WebhookEndpoint
from payments.providers import repository as payments_repo

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def sql(url: str, statement: str, **params: object) -> list[Any]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    url = with_database(postgres_server, f"billing_secrets_{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_database(url, fresh=True))
    yield url
    asyncio.run(drop_database(url))


def test_the_migrations_seal_plaintext_rows_and_redact_old_audit_rows(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_database
    monkeypatch.setenv("SECRETS_KEYS", json.dumps({"m1": new_key()}))
    upgrade(migrations_dir("payments"), url, "0006")
    upgrade(migrations_dir("notify"), url, "0005")
    api_key, secret, hook = "sk_live_" + "a" * 24 + "1111", "whsec_" + "b" * 32 + "2222", "whsec_" + "c" * 32 + "3333"
    asyncio.run(sql(url, "INSERT INTO payments.provider_account VALUES ('t-1', 'stripe', :k, :s, now())", k=api_key, s=secret))
    asyncio.run(
        sql(
            url,
            "INSERT INTO payments.audit_log (occurred_at, tenant, key_id, method, path, status_code, request) "
            "VALUES (now(), 't-1', 'k', 'PUT', '/v1/providers/stripe', 200, CAST(:r AS jsonb))",
            r=json.dumps({"api_key": api_key, "webhook_secret": secret}),
        )
    )
    asyncio.run(
        sql(
            url,
            "INSERT INTO notify.webhook_endpoint (endpoint_id, tenant, url, event_types, secret, created_at) "
            "VALUES ('e-1', 't-1', 'https://x.example', '[\"*\"]', :s, now())",
            s=hook,
        )
    )
    asyncio.run(
        sql(
            url,
            "INSERT INTO notify.audit_log (occurred_at, tenant, key_id, method, path, status_code, after) "
            "VALUES (now(), 't-1', 'k', 'POST', '/v1/webhook-endpoints', 201, CAST(:a AS jsonb))",
            a=json.dumps({"secret": hook}),
        )
    )
    asyncio.run(
        sql(
            url,
            "INSERT INTO notify.idempotency_key VALUES ('t-1', 'ep-1', 'x', 'POST', '/v1/webhook-endpoints', 201, 'application/json', :b, now(), now())",
            b=json.dumps({"secret": hook}).encode(),
        )
    )

    upgrade(migrations_dir("payments"), url)
    upgrade(migrations_dir("notify"), url)
    everything = json.dumps(
        [
            [str(v) for v in row]
            for row in (
                asyncio.run(sql(url, "SELECT api_key, webhook_secret FROM payments.provider_account"))
                + asyncio.run(sql(url, "SELECT request::text FROM payments.audit_log"))
                + asyncio.run(sql(url, "SELECT secret FROM notify.webhook_endpoint"))
                + asyncio.run(sql(url, "SELECT after::text FROM notify.audit_log"))
                + asyncio.run(sql(url, "SELECT convert_from(response_body, 'UTF8') FROM notify.idempotency_key"))
            )
        ],
        ensure_ascii=False,
    )
    for plain in (api_key, secret, hook):
        assert plain not in everything and f"…{plain[-4:]}" in everything
    assert everything.count("sealed:v1:m1:") == 4
    keyring = Keyring.from_env()
    [row] = asyncio.run(sql(url, "SELECT api_key FROM payments.provider_account"))
    assert keyring.open(row[0], payments_repo.where("t-1", "stripe", "api_key")) == api_key
    # The audit rows stay append-only after the one redaction.
    with pytest.raises(Exception, match="append-only"):
        asyncio.run(sql(url, "UPDATE payments.audit_log SET status_code = 500"))


def test_rotate_seals_every_secret_again_with_the_current_key(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_database
    upgrade(migrations_dir("payments"), url)
    upgrade(migrations_dir("notify"), url)
    old_key, new = new_key(), new_key()
    old = Keyring.from_config({"old": old_key}, None, None)
    endpoint = WebhookEndpoint(endpoint_id="e-1", tenant="t-1", url="https://x.example", event_types=["*"], secret="whsec_" + "d" * 32, created_at=NOW)

    async def store() -> None:
        engine = create_async_engine(async_url(url))
        sessions = async_sessionmaker(engine)
        async with sessions() as session, session.begin():
            await payments_repo.upsert(session, old, "t-1", "gocardless", "live_token_0001", "g" * 40, NOW)
            await notify_repo.insert_endpoint(session, old, endpoint)
            await notify_repo.set_secrets(session, old, endpoint, "whsec_" + "e" * 32, "whsec_" + "d" * 32, NOW)
        await engine.dispose()

    asyncio.run(store())
    monkeypatch.setenv("SECRETS_KEYS", json.dumps({"new": new, "old": old_key}))
    monkeypatch.setenv("SECRETS_CURRENT_KEY", "new")
    result = CliRunner().invoke(app, ["secrets", "rotate", "--database-url", url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "payments.provider_account: 1 rows" in result.output and "notify.webhook_endpoint: 1 rows" in result.output
    again = CliRunner().invoke(app, ["secrets", "rotate", "--database-url", url], catch_exceptions=False)
    assert "payments.provider_account: 0 rows" in again.output and "notify.webhook_endpoint: 0 rows" in again.output

    only_new = Keyring.from_config({"new": new}, None, None)  # the old key may go now
    [account] = asyncio.run(sql(url, "SELECT api_key, webhook_secret FROM payments.provider_account"))
    assert only_new.open(account[0], payments_repo.where("t-1", "gocardless", "api_key")) == "live_token_0001"
    [row] = asyncio.run(sql(url, "SELECT endpoint_id, tenant, url, event_types, secret, previous_secret, created_at FROM notify.webhook_endpoint"))
    stored = WebhookEndpoint(endpoint_id=row[0], tenant=row[1], url=row[2], event_types=row[3], secret=row[4], previous_secret=row[5], created_at=row[6])
    opened = notify_repo.opened(only_new, stored)
    assert (opened.secret, opened.previous_secret) == ("whsec_" + "e" * 32, "whsec_" + "d" * 32)
