"""notify's HTTP API: brand and delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from billing_events import InvoiceIssued, PortalSignInLinkIssued, account_id, new_event
from billing_runtime.testing import tenant_headers
from notify.delivery import repository as repo
from notify.delivery.service import record_portal_sign_in

# Events are handed to notify in process (the `publish` fixture delivers them through the runtime's
# dispatch), so it is served without a broker consumer (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def test_brand_defaults_then_put_replaces(client: httpx.AsyncClient, tenant: str) -> None:
    r = await client.get("/v1/brand", headers=tenant_headers(tenant))
    assert r.status_code == 200
    assert r.json()["sender_name"] == tenant and r.json()["configured"] is False and r.json()["sender_email"] is None

    body = {
        "sender_name": "Northwind IT",
        "sender_email": "billing@northwind.example",
        "logo_url": "https://cdn.example/l.png",
        "primary_color": "#112233",
        "footer": "Northwind IT Ltd\n1 Main St",
    }
    first = await client.put("/v1/brand", headers=tenant_headers(tenant), json=body)
    again = await client.put("/v1/brand", headers=tenant_headers(tenant), json=body)
    assert first.status_code == again.status_code == 200
    got = (await client.get("/v1/brand", headers=tenant_headers(tenant))).json()
    assert {k: got[k] for k in body} == body and got["configured"] is True

    changed = await client.put("/v1/brand", headers=tenant_headers(tenant), json={"sender_name": "NW"})
    assert changed.json()["sender_email"] is None and changed.json()["primary_color"] == "#1F4E79"
    other = (await client.get("/v1/brand", headers=tenant_headers(f"{tenant}-x"))).json()
    assert other["configured"] is False


async def test_brand_rejects_bad_values(client: httpx.AsyncClient, tenant: str) -> None:
    for bad in (
        {"sender_name": "NW", "primary_color": "red"},
        {"sender_name": "NW\r\nBcc: x@y.z"},
        {"sender_name": "NW", "sender_email": "not an email"},
        {"sender_name": "NW", "logo_url": "javascript:alert(1)"},
        {"sender_name": ""},
        {"sender_name": "NW", "colour": "#000000"},
        {"sender_name": "NW", "iban": "DE89 3704 0044 0532 0130 01"},  # wrong check digits
        {"sender_name": "NW", "bic": "NOTABIC"},
        {"sender_name": "NW", "portal_url": "javascript:alert(1)"},
        {"sender_name": "NW", "support_email": "help"},
    ):
        r = await client.put("/v1/brand", headers=tenant_headers(tenant), json=bad)
        assert r.status_code == 422, bad
        assert r.json()["code"] == "validation_error"
    assert (await client.put("/v1/brand", json={"sender_name": "NW"})).status_code == 401


async def test_deliveries_page_and_filter(
    client: httpx.AsyncClient, tenant: str, publish: Any, applied: Any, make_invoice: Callable[..., InvoiceIssued]
) -> None:
    # No contact and no buyer email: each invoice becomes a `no_recipient` delivery, no SMTP needed.
    events = [
        new_event(invoice, source="/tests", tenant=tenant)
        for invoice in (make_invoice(buyer_account_id=account_id(tenant, f"c-{i % 2}"), number=f"NW-{i}") for i in range(5))
    ]
    for event in events:
        await publish(event)
    for event in events:
        assert await applied(event.id) == "applied"

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params=params)
        assert r.status_code == 200
        body = r.json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({d["delivery_id"] for d in seen}) == 5
    assert [d["created_at"] for d in seen] == sorted((d["created_at"] for d in seen), reverse=True)
    assert {d["cause_event_id"] for d in seen} == {e.id for e in events}
    assert all(d["status"] == "no_recipient" for d in seen)

    only = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"account_id": account_id(tenant, "c-1")})
    assert len(only.json()["items"]) == 2
    assert (await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"status": "sent"})).json()["items"] == []
    by_template = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"template": "invoice_issued"})
    assert len(by_template.json()["items"]) == 5
    assert (await client.get("/v1/deliveries", headers=tenant_headers(f"{tenant}-x"))).json()["items"] == []

    detail = await client.get(f"/v1/deliveries/{seen[0]['delivery_id']}", headers=tenant_headers(tenant))
    assert detail.status_code == 200 and "NW-" in detail.json()["body_text"] and "<html" in detail.json()["body_html"]
    missing = await client.get("/v1/deliveries/nope", headers=tenant_headers(tenant))
    assert missing.status_code == 404 and missing.json()["code"] == "delivery_not_found"


async def test_deliveries_reject_bad_query(client: httpx.AsyncClient, tenant: str) -> None:
    r = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"cursor": "!!not-a-cursor"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_cursor"
    r = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"status": "lost"})
    assert r.status_code == 422
    r = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"limit": 0})
    assert r.status_code == 422


async def test_the_delivery_log_shows_a_sign_in_email_without_its_link(client: httpx.AsyncClient, tenant: str, db: AsyncEngine) -> None:
    token = "Tok3n_" + uuid.uuid4().hex
    link = PortalSignInLinkIssued(
        user_id=f"user-{tenant}",
        email="ann@customer.example",
        name="Ann",
        role="customer_viewer",
        account_id=account_id(tenant, "c-1"),
        link=f"https://portal.example/p/{tenant}/sign-in/{token}",
        expires_at=datetime(2026, 11, 2, 11, 15, tzinfo=UTC),
    )
    event = new_event(link, source="/tests", tenant=tenant)
    sessions = async_sessionmaker(db, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            delivery = await record_portal_sign_in(session, event, now=datetime(2026, 11, 2, 11, 0, tzinfo=UTC), default_sender_email="billing@localhost")
        assert token in delivery.body_text  # what is sent carries the link
        detail = (await client.get(f"/v1/deliveries/{delivery.delivery_id}", headers=tenant_headers(tenant))).json()
        assert detail["template"] == "portal_sign_in" and detail["recipient"] == "ann@customer.example"
        assert token not in detail["body_text"] and token not in detail["body_html"]
        assert f"/p/{tenant}/sign-in/…" in detail["body_text"]
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(repo.DELIVERY).where(repo.DELIVERY.c.tenant == tenant))
