"""Partner webhooks against a real local HTTP receiver: endpoints over the API, events in over
Tansu, each delivery signed (Stripe's scheme), retried with backoff under one stable id, and
the secret rotated with a grace period."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from notify_testkit import paid

from billing_events import Address, InvoiceIssued, account_id, new_event
from billing_events.testing import make_customer
from billing_runtime.testing import eventually, tenant_headers
from notify.webhook.service import verify, webhook_delivery_id

# Events are handed to notify in process (the `publish` fixture delivers them through the runtime's
# dispatch), so it is served without a broker consumer (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def create(client: httpx.AsyncClient, tenant: str, url: str, types: list[str], key: str | None = None) -> dict[str, Any]:
    extra = {"Idempotency-Key": key} if key else {}
    answer = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant, **extra), json={"url": url, "event_types": types})
    assert answer.status_code in (200, 201), answer.text
    return dict(answer.json())


async def test_endpoints_are_created_once_listed_without_secret_and_deleted(client: httpx.AsyncClient, tenant: str) -> None:
    body = {"url": "https://localhost/hooks", "event_types": ["billing.invoice.issued.v1", "billing.account.suspended.v1"]}
    first = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant, **{"Idempotency-Key": "ep-1"}), json=body)
    again = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant, **{"Idempotency-Key": "ep-1"}), json=body)
    # The runtime replays the first answer of an Idempotency-Key as it was, marked as a replay.
    assert (first.status_code, again.status_code) == (201, 201) and again.headers["Idempotent-Replayed"] == "true"
    assert first.json() == again.json() and first.json()["secret"].startswith("whsec_")
    endpoint_id = first.json()["endpoint_id"]

    listed = (await client.get("/v1/webhook-endpoints", headers=tenant_headers(tenant))).json()["items"]
    assert [e["endpoint_id"] for e in listed] == [endpoint_id] and "secret" not in listed[0]
    assert listed[0]["event_types"] == ["billing.account.suspended.v1", "billing.invoice.issued.v1"]
    assert (await client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant_headers("someone-else"))).status_code == 404

    unknown = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant), json={**body, "event_types": ["billing.usage.recorded.v1"]})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_event_type")
    bad_url = await client.post("/v1/webhook-endpoints", headers=tenant_headers(tenant), json={**body, "url": "ftp://x"})
    assert (bad_url.status_code, bad_url.json()["code"]) == (422, "validation_error")

    assert (await client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant_headers(tenant))).status_code == 204
    gone = await client.delete(f"/v1/webhook-endpoints/{endpoint_id}", headers=tenant_headers(tenant))
    assert (gone.status_code, gone.json()["code"]) == (404, "webhook_endpoint_not_found")
    assert (await client.get("/v1/webhook-endpoints", headers=tenant_headers(tenant))).json()["items"] == []


async def test_a_signed_delivery_is_retried_under_one_id_until_accepted(
    client: httpx.AsyncClient,
    tenant: str,
    receiver: Any,
    publish: Any,
    applied: Any,
    make_invoice: Callable[..., InvoiceIssued],
    nothing_left_to_send: Any,
) -> None:
    receiver.fail_first = 2
    endpoint = await create(client, tenant, receiver.url, ["billing.invoice.issued.v1"])
    invoice = make_invoice(buyer_account_id=account_id(tenant, "c-1"))
    issued = new_event(invoice, source="/tests", tenant=tenant)
    unsubscribed = paid(tenant, invoice.invoice_id)
    await publish(issued)
    await publish(issued)  # delivered twice by the broker: one webhook delivery
    await publish(unsubscribed)

    requests = await receiver.wait_for(3)
    assert await applied(unsubscribed.id) == "applied"
    expected_id = webhook_delivery_id(endpoint["endpoint_id"], issued.id)
    now = datetime.now(UTC)
    for request in requests:
        assert request.headers["webhook-id"] == expected_id
        assert verify(request.body.decode(), request.headers["billing-signature"], endpoint["secret"], now)
        assert not verify(request.body.decode(), request.headers["billing-signature"], "whsec_wrong", now)
        # Altered in transit: the signature no longer matches.
        assert not verify(request.body.decode().replace(invoice.number, "NW-FORGED"), request.headers["billing-signature"], endpoint["secret"], now)
    document = json.loads(requests[0].body)
    assert (document["id"], document["type"], document["data"]["number"]) == (issued.id, "billing.invoice.issued.v1", invoice.number)

    async def sent() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await client.get(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/deliveries", headers=tenant_headers(tenant))).json()[
            "items"
        ]
        return items if items and items[0]["status"] == "sent" else None

    [row] = await eventually(sent, "the webhook delivery marked sent", 30, interval=0.1)
    assert (row["delivery_id"], row["status"], row["attempts"], row["last_status_code"]) == (expected_id, "sent", 3, 200)
    await nothing_left_to_send("webhook_delivery", tenant, "webhook")  # no wrong fourth request is still to go out
    assert len(receiver.received()) == 3


async def test_a_rotated_secret_signs_beside_the_old_one_for_the_grace_period(
    client: httpx.AsyncClient,
    tenant: str,
    receiver: Any,
    publish: Any,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    endpoint = await create(client, tenant, receiver.url, ["*"])
    path = f"/v1/webhook-endpoints/{endpoint['endpoint_id']}/rotate-secret"
    rotated = (await client.post(path, headers=tenant_headers(tenant), json={"grace_seconds": 3600})).json()
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"] is not None
    await publish(new_event(make_invoice(buyer_account_id=account_id(tenant, "c-1"), number="NW-1"), source="/tests", tenant=tenant))
    [during] = await receiver.wait_for(1)
    now = datetime.now(UTC)
    assert verify(during.body.decode(), during.headers["billing-signature"], rotated["secret"], now)
    assert verify(during.body.decode(), during.headers["billing-signature"], endpoint["secret"], now)

    final = (await client.post(path, headers=tenant_headers(tenant), json={"grace_seconds": 0})).json()
    await publish(new_event(make_invoice(buyer_account_id=account_id(tenant, "c-1"), number="NW-2"), source="/tests", tenant=tenant))
    after = (await receiver.wait_for(2))[1]
    now = datetime.now(UTC)
    assert verify(after.body.decode(), after.headers["billing-signature"], final["secret"], now)
    assert not verify(after.body.decode(), after.headers["billing-signature"], rotated["secret"], now)
    # A stale signature (replayed an hour later) is refused by the receiver's tolerance.
    later = datetime.fromtimestamp(now.timestamp() + 3600, UTC)
    assert not verify(after.body.decode(), after.headers["billing-signature"], final["secret"], later)


async def test_a_customer_changed_in_the_portal_reaches_the_partner_system(client: httpx.AsyncClient, tenant: str, receiver: Any, publish: Any) -> None:
    """CustomerUpserted (an end customer's billing profile, saved in the portal) is a webhook the
    partner's system of record subscribes to."""
    endpoint = await create(client, tenant, receiver.url, ["billing.customer.upserted.v1"])
    data = make_customer(
        tenant,
        "alpha",
        name="Alpha Dental",
        billing_email="accounts@alpha.example",
        revision=2,
        vat_id="IE6388047V",
        address=Address(lines=["1 Main Street"], city="Dublin", country="IE"),
        contact_name="Ann Alpha",
    )
    event = new_event(data, source="/usage-ingest", tenant=tenant)
    await publish(event)
    [request] = await receiver.wait_for(1)
    assert verify(request.body.decode(), request.headers["billing-signature"], endpoint["secret"], datetime.now(UTC))
    document = json.loads(request.body)
    assert (document["type"], document["data"]["billing_email"], document["data"]["contact_name"], document["data"]["revision"]) == (
        "billing.customer.upserted.v1",
        "accounts@alpha.example",
        "Ann Alpha",
        2,
    )
