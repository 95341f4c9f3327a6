"""Partner webhook endpoints: signing secrets sealed at rest and in stored replies, never in audit
rows; destinations checked when registered and again at each send (https, public addresses
only, unless allow-listed), the POST going to the address checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_events import InvoiceIssued, account_id, new_event
from billing_runtime.testing import eventually, serve, tenant_headers
from notify.config import Settings
from notify.main import build
from notify.webhook import repository as repo
from notify.webhook.models import WebhookEndpoint

# Events are handed to notify in process (the `publish` fixture delivers them through the runtime's
# dispatch), so it is served without a broker consumer (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def dump(db: AsyncEngine, sql: str, **params: Any) -> str:
    async with db.connect() as conn:
        return json.dumps([[str(v) for v in r] for r in (await conn.execute(text(sql), params)).all()], ensure_ascii=False)


async def test_secrets_are_sealed_at_rest_replayed_sealed_and_redacted_in_audit(client: httpx.AsyncClient, tenant: str, db: AsyncEngine) -> None:
    body = {"url": "https://localhost/hooks", "event_types": ["*"]}
    first = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant, **{"Idempotency-Key": "ep-sealed"}), json=body)
    again = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant, **{"Idempotency-Key": "ep-sealed"}), json=body)
    assert first.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    endpoint_id, secret = first.json()["endpoint_id"], first.json()["secret"]
    rotate = f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret"
    rotated = (await client.post(rotate, headers=tenant_headers(tenant, **{"Idempotency-Key": "rot-1"}), json={"grace_seconds": 60})).json()["secret"]

    stored = await dump(db, "SELECT secret, previous_secret FROM notify.webhook_endpoint WHERE endpoint_id = :e", e=endpoint_id)
    assert stored.count("sealed:v1:") == 2
    kept = await dump(db, "SELECT convert_from(response_body, 'UTF8') FROM notify.idempotency_key WHERE tenant = :t", t=tenant)
    audit = await dump(db, "SELECT request, before, after FROM notify.audit_log WHERE tenant = :t", t=tenant)
    assert kept.count("sealed:v1:") == 2 and f"…{rotated[-4:]}" in audit
    for value in (stored, kept, audit):
        assert secret not in value and rotated not in value

    # A sealed secret moved to another tenant's endpoint does not open there.
    from billing_runtime.crypto import Keyring

    keyring = Keyring.from_env()
    sealed = keyring.seal(
        secret, repo.where(WebhookEndpoint(endpoint_id=endpoint_id, tenant=tenant, url="", event_types=[], secret="", created_at=datetime.now(UTC)), "secret")
    )
    moved = WebhookEndpoint(endpoint_id=endpoint_id, tenant="someone-else", url="", event_types=[], secret=sealed, created_at=datetime.now(UTC))
    with pytest.raises(Exception, match="does not open"):
        repo.opened(keyring, moved)


REFUSED = [
    ("http://127.0.0.1:8406/healthz", "webhook_url_not_https"),
    ("http://partner.example/hooks", "webhook_url_unresolvable"),
    ("https://127.0.0.1:8406/healthz", "webhook_url_not_allowed"),
    ("https://localhost/hooks", "webhook_url_not_allowed"),
    ("https://10.1.2.3/hooks", "webhook_url_not_allowed"),
    ("https://192.168.0.10/hooks", "webhook_url_not_allowed"),
    ("https://169.254.169.254/latest/meta-data/", "webhook_url_not_allowed"),
    ("https://[fd00:ec2::254]/latest/meta-data/", "webhook_url_not_allowed"),
    ("https://[::ffff:127.0.0.1]/hooks", "webhook_url_not_allowed"),
    ("https://[::1]/hooks", "webhook_url_not_allowed"),
    ("https://0.0.0.0/hooks", "webhook_url_not_allowed"),
    ("https://224.0.0.1/hooks", "webhook_url_not_allowed"),
    ("https://100.64.0.1/hooks", "webhook_url_not_allowed"),
    ("https://user:pw@8.8.8.8/hooks", "webhook_url_invalid"),
]


async def test_registration_refuses_plain_http_and_non_public_destinations(settings: Settings, tenant: str) -> None:
    strict = settings.model_copy(update={"webhook_allowed_destinations": []})
    async with serve(build(strict)) as client:
        for url, code in REFUSED:
            r = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant), json={"url": url, "event_types": ["*"]})
            assert (r.status_code, r.json().get("code"), r.json().get("field")) == (422, code, "url"), (url, r.text)
        assert (await client.get("/v1/webhook-endpoints", headers=tenant_headers(tenant))).json()["items"] == []
    from notify.webhook.destination import AllowList, check

    public = await check("https://8.8.8.8/hooks", AllowList.parse([]), "register")
    assert (public.url, public.host, public.server_name) == ("https://8.8.8.8:443/hooks", "8.8.8.8", "8.8.8.8")


async def test_each_send_checks_again_and_posts_to_the_address_checked(
    settings: Settings,
    tenant: str,
    receiver: Any,
    publish: Any,
    db: AsyncEngine,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    port = receiver.url.rsplit(":", 1)[1].split("/", 1)[0]
    named = f"http://localhost:{port}/"
    # Allowed by name: the POST goes to the address `localhost` resolved to, named in Host.
    async with serve(build(settings.model_copy(update={"webhook_allowed_destinations": ["localhost"]}))) as client:
        created = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant), json={"url": named, "event_types": ["*"]})
        assert created.status_code == 201, created.text
        await publish(new_event(make_invoice(buyer_account_id=account_id(tenant, "c-1"), number="SSRF-1"), source="/tests", tenant=tenant))
        [request] = await receiver.wait_for(1)
        assert request.headers["host"] == f"localhost:{port}"
        assert (await client.delete(f"/v1/webhook-endpoints/{created.json()['endpoint_id']}", headers=tenant_headers(tenant))).status_code == 204

    # Registered while allowed (or before the check existed); the allow-list has gone since: the
    # send is refused, nothing reaches the address, and the partner learns nothing of what is there.
    async with serve(build(settings)) as client:
        created = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant), json={"url": receiver.url, "event_types": ["*"]})
        endpoint_id = created.json()["endpoint_id"]
    async with serve(build(settings.model_copy(update={"webhook_allowed_destinations": []}))) as client:
        await publish(new_event(make_invoice(buyer_account_id=account_id(tenant, "c-1"), number="SSRF-2"), source="/tests", tenant=tenant))
        path = f"/v1/webhook-endpoints/{endpoint_id}/deliveries"

        async def failed() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await client.get(path, headers=tenant_headers(tenant))).json()["items"]
            return items if items and items[0]["status"] == "failed" else None

        [delivery] = await eventually(failed, "the webhook delivery marked failed", 30, interval=0.1)
        assert (delivery["status"], delivery["last_status_code"], delivery["last_error"]) == ("failed", None, "destination refused: webhook_url_not_https")
    assert len(receiver.received()) == 1
    assert "sealed:v1:" in await dump(db, "SELECT secret FROM notify.webhook_endpoint WHERE endpoint_id = :e", e=endpoint_id)
