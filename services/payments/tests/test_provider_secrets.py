"""Provider credentials: sealed at rest and bound to their seller, never in audit rows or stored
replies; webhook secrets long enough to trust; webhook events deduplicated per seller; signatures
dated outside the 300 s around now refused both ways."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billing_runtime.db import async_url
from billing_runtime.testing import tenant_headers
from provider_sandboxes import gocardless_signature, stripe_signature

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

STRIPE_SECRET = "whsec_" + "s" * 32


def tenant_id() -> str:
    return f"seller-{uuid.uuid4().hex[:8]}"


async def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def intent_event(event_id: str) -> bytes:
    """A Stripe event about a payment intent payments never made (its effect: `unknown_payment`)."""
    intent = {"id": f"pi_{uuid.uuid4().hex[:12]}", "object": "payment_intent", "status": "succeeded", "metadata": {}}
    event = {"id": event_id, "object": "event", "type": "payment_intent.succeeded", "data": {"object": intent}}
    return json.dumps(event).encode()


async def put_stripe(client: httpx.AsyncClient, tenant: str, api_key: str, secret: str = STRIPE_SECRET, **extra: str) -> httpx.Response:
    return await client.put("/v1/providers/stripe", headers=tenant_headers(tenant, **extra), json={"api_key": api_key, "webhook_secret": secret})


async def test_credentials_are_sealed_and_never_in_audit_rows_or_stored_replies(client: httpx.AsyncClient, migrated: str) -> None:
    tenant, other = tenant_id(), tenant_id()
    api_key = f"sk_test_{uuid.uuid4().hex}"
    first = await put_stripe(client, tenant, api_key, **{"Idempotency-Key": f"creds-{tenant}"})
    again = await put_stripe(client, tenant, api_key, **{"Idempotency-Key": f"creds-{tenant}"})
    assert (first.status_code, again.headers.get("Idempotent-Replayed")) == (200, "true"), first.text
    assert first.json()["api_key_last4"] == api_key[-4:] and api_key not in first.text
    assert (await put_stripe(client, other, f"sk_test_{uuid.uuid4().hex}")).status_code == 200

    stored = await rows(migrated, "SELECT * FROM payments.provider_account WHERE tenant = :t", t=tenant)
    assert stored[0].api_key.startswith("sealed:v1:") and stored[0].webhook_secret.startswith("sealed:v1:")
    dumped = json.dumps(
        [
            list(map(str, r))
            for r in await rows(migrated, "SELECT * FROM payments.audit_log WHERE tenant = :t", t=tenant)
            + await rows(migrated, "SELECT tenant, key, convert_from(response_body, 'UTF8') FROM payments.idempotency_key WHERE tenant = :t", t=tenant)
        ],
        ensure_ascii=False,
    )
    assert f"…{api_key[-4:]}" in dumped and "/v1/providers/stripe" in dumped
    assert api_key not in dumped and STRIPE_SECRET not in dumped

    # A ciphertext copied into another seller's row opens nowhere: it is bound to its tenant.
    await rows(
        migrated, "UPDATE payments.provider_account SET api_key = :k WHERE tenant = :t AND provider = 'stripe' RETURNING tenant", k=stored[0].api_key, t=other
    )
    swapped = await client.get("/v1/providers/stripe", headers=tenant_headers(other))
    assert (swapped.status_code, swapped.json()["code"]) == (409, "provider_credentials_unreadable")
    assert api_key not in swapped.text and (await client.get("/v1/providers/stripe", headers=tenant_headers(tenant))).status_code == 200


async def test_webhook_secrets_too_short_or_empty_are_refused(client: httpx.AsyncClient, migrated: str) -> None:
    tenant = tenant_id()
    for provider, secret in (("stripe", "whsec_short"), ("gocardless", ""), ("gocardless", " " * 40)):
        r = await client.put(f"/v1/providers/{provider}", headers=tenant_headers(tenant), json={"api_key": "sandbox_token", "webhook_secret": secret})
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "webhook_secret_too_short", "webhook_secret"), r.text
    missing = await client.put("/v1/providers/gocardless", headers=tenant_headers(tenant), json={"api_key": " ", "webhook_secret": "g" * 40})
    assert (missing.status_code, missing.json()["code"]) == (422, "api_key_missing")
    assert (await client.get("/v1/providers/gocardless", headers=tenant_headers(tenant))).status_code == 409

    # A GoCardless account stored with an empty secret before the minimum: a body signed with the
    # empty key is not applied.
    assert (
        await client.put("/v1/providers/gocardless", headers=tenant_headers(tenant), json={"api_key": "sandbox_t", "webhook_secret": "g" * 40})
    ).status_code == 200
    # GoCardless signs no time: an event dated in the future is refused, an old one is a retry.
    future = {"id": "EV0000", "created_at": "2099-01-01T00:00:00.000Z", "resource_type": "payments", "action": "confirmed", "links": {}}
    dated = json.dumps({"events": [future]}).encode()
    r = await client.post(f"/v1/webhooks/gocardless/{tenant}", content=dated, headers={"Webhook-Signature": gocardless_signature(dated, "g" * 40)})
    assert (r.status_code, r.json()["code"]) == (498, "invalid_signature"), r.text
    from billing_runtime.crypto import Keyring
    from payments.providers.repository import where

    empty = Keyring.from_env().seal("", where(tenant, "gocardless", "webhook_secret"))
    await rows(migrated, "UPDATE payments.provider_account SET webhook_secret = :s WHERE tenant = :t RETURNING tenant", s=empty, t=tenant)
    body = json.dumps({"events": [{"id": "EV0001", "resource_type": "payments", "action": "confirmed", "links": {"payment": "PM0001"}}]}).encode()
    forged = await client.post(f"/v1/webhooks/gocardless/{tenant}", content=body, headers={"Webhook-Signature": gocardless_signature(body, "")})
    assert (forged.status_code, forged.json()["code"]) == (400, "invalid_signature")
    assert await rows(migrated, "SELECT 1 FROM payments.provider_event WHERE tenant = :t", t=tenant) == []


async def test_event_ids_are_per_seller_and_signatures_dated_outside_300_s_are_refused(client: httpx.AsyncClient, migrated: str) -> None:
    attacker, victim = tenant_id(), tenant_id()
    victim_secret = "whsec_" + uuid.uuid4().hex
    assert (await put_stripe(client, attacker, "sk_test_attacker")).status_code == 200
    assert (await put_stripe(client, victim, "sk_test_victim", victim_secret)).status_code == 200
    body = intent_event(f"evt_{uuid.uuid4().hex[:16]}")

    # The attacker posts the victim's coming event id to its own endpoint, signed with its own secret.
    planted = await client.post(f"/v1/webhooks/stripe/{attacker}", content=body, headers={"Stripe-Signature": stripe_signature(body, STRIPE_SECRET)})
    assert planted.json()["effect"] == "unknown_payment"
    genuine = await client.post(f"/v1/webhooks/stripe/{victim}", content=body, headers={"Stripe-Signature": stripe_signature(body, victim_secret)})
    assert genuine.json()["effect"] == "unknown_payment", genuine.text
    replay = await client.post(f"/v1/webhooks/stripe/{victim}", content=body, headers={"Stripe-Signature": stripe_signature(body, victim_secret)})
    assert replay.json()["effect"] == "duplicate"

    for skew in (24 * 3600, 330, -330):
        later = intent_event(f"evt_{uuid.uuid4().hex[:16]}")
        signature = stripe_signature(later, victim_secret, timestamp=int(time.time()) + skew)
        r = await client.post(f"/v1/webhooks/stripe/{victim}", content=later, headers={"Stripe-Signature": signature})
        assert (r.status_code, r.json().get("code")) == (400, "invalid_signature"), (skew, r.text)
    near = intent_event(f"evt_{uuid.uuid4().hex[:16]}")
    soon = stripe_signature(near, victim_secret, timestamp=int(time.time()) + 60)
    r = await client.post(f"/v1/webhooks/stripe/{victim}", content=near, headers={"Stripe-Signature": soon})
    assert r.status_code == 200, r.text
