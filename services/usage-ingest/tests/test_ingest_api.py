"""usage-ingest against a real PostgreSQL and a real Tansu broker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing_events import account_id
from billing_events.topics import CUSTOMERS, USAGE
from billing_runtime.testing import read_events, tenant_headers

from .conftest import Products

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def add_customer(client: httpx.AsyncClient, tenant: str, cid: str = "c-1") -> dict[str, Any]:
    r = await client.post(
        "/v1/customers",
        headers=tenant_headers(tenant),
        json={"records": [{"id": cid, "name": "Contoso Dental", "billing_email": "ap@contoso.example", "country": "US", "currency": "USD"}]},
    )
    assert r.status_code == 200, r.text
    return r.json()


def usage(rid: str, qty: str = "2.5", customer: str = "c-1") -> dict[str, Any]:
    return {"id": rid, "customer_id": customer, "product_code": "AZ-VM", "quantity": qty, "timestamp": "2026-10-12T10:00:00Z"}


async def test_same_batch_twice_is_counted_once(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    await add_customer(client, tenant)
    batch = {"records": [usage(f"u-{i}") for i in range(50)]}
    first = (await client.post("/v1/usage", headers=tenant_headers(tenant), json=batch)).json()
    second = (await client.post("/v1/usage", headers=tenant_headers(tenant), json=batch)).json()
    assert (first["accepted"], first["duplicate"]) == (50, 0)
    assert (second["accepted"], second["duplicate"]) == (0, 50)
    assert second["results"][7]["result"] == first["results"][7]["result"]

    events = await read_events(kafka_bootstrap, USAGE.name, until=lambda seen: len(seen) >= 50, match=lambda e: e.tenant == tenant)
    assert len({e.data.record_id for e in events}) == 50
    # Give a duplicate publication a chance to show up, then count again.
    again = await read_events(kafka_bootstrap, USAGE.name, until=lambda seen: len(seen) >= 50, match=lambda e: e.tenant == tenant)
    assert len(again) == 50
    assert all(e.key == account_id(tenant, "c-1") for e in again)


async def test_each_record_judged_alone(client: httpx.AsyncClient, tenant: str) -> None:
    await add_customer(client, tenant)
    await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": [usage("u-1")]})
    batch = {
        "records": [
            usage("u-1"),  # duplicate
            usage("u-1", qty="9"),  # conflict with the stored u-1
            usage("u-2"),  # accepted
            {**usage("u-3"), "quantity": 1.5},  # float: rejected
            {**usage("u-4"), "timestamp": "2026-10-12T10:00:00"},  # no time zone
            usage("u-5", customer="nobody"),  # unknown customer
            {**usage("u-6"), "colour": "red"},  # unknown field
            usage("u-2"),  # repeated in the batch: duplicate of the accepted one
            usage("u-2", qty="7"),  # repeated with other content: conflict
        ]
    }
    r = await client.post("/v1/usage", headers=tenant_headers(tenant), json=batch)
    assert r.status_code == 200
    body = r.json()
    got = [(x["status"], x.get("code"), x.get("field")) for x in body["results"]]
    assert got == [
        ("duplicate", None, None),
        ("conflict", "id_conflict", "id"),
        ("accepted", None, None),
        ("rejected", "invalid_value", "quantity"),
        ("rejected", "timezone_required", "timestamp"),
        ("rejected", "unknown_customer", "customer_id"),
        ("rejected", "unknown_field", "colour"),
        ("duplicate", None, None),
        ("conflict", "id_conflict", "id"),
    ]
    assert (body["accepted"], body["duplicate"], body["conflict"], body["rejected"]) == (1, 2, 2, 4)
    stored = (await client.get("/v1/usage/u-1", headers=tenant_headers(tenant))).json()
    assert stored["quantity"] == "2.5" or str(stored["quantity"]) == "2.5"


async def test_malformed_request_is_a_422_problem(client: httpx.AsyncClient, tenant: str) -> None:
    bodies: tuple[dict[str, Any], ...] = ({"records": []}, {"records": "x"}, {"rows": []}, {"records": [{}] * 1001})
    for body in bodies:
        r = await client.post("/v1/usage", headers=tenant_headers(tenant), json=body)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation_error"
    r = await client.post(
        "/v1/usage",
        headers=tenant_headers(tenant),
        content=b"{not json",
    )
    assert r.status_code == 422


async def test_tenant_is_required(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/usage", json={"records": [usage("u-1")]})
    assert r.status_code == 401
    assert r.json()["code"] == "tenant_required"


async def test_customer_upsert_emits_each_revision_once(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    first = await add_customer(client, tenant)
    again = await add_customer(client, tenant)
    assert first["results"][0]["status"] == "accepted"
    assert again["results"][0]["status"] == "duplicate"
    changed = await client.post(
        "/v1/customers",
        headers=tenant_headers(tenant),
        json={"records": [{"id": "c-1", "name": "Contoso Dental LLC", "billing_email": "ap@contoso.example", "country": "US", "currency": "USD"}]},
    )
    assert changed.json()["results"][0]["result"]["revision"] == 2
    events = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda s: len(s) >= 2, match=lambda e: e.tenant == tenant)
    assert [e.data.revision for e in events] == [1, 2]
    assert events[1].data.name == "Contoso Dental LLC"
    customer = (await client.get("/v1/customers/c-1", headers=tenant_headers(tenant))).json()
    assert customer["account_id"] == account_id(tenant, "c-1")


async def test_customer_address_and_tax_exemption_are_passed_through(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    plain = {"id": "c-9", "name": "Embassy", "billing_email": "ap@embassy.example", "country": "IE", "currency": "EUR"}
    assert (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [plain]})).json()["accepted"] == 1
    # The same customer again without the new fields is still a duplicate (the hash leaves out defaults).
    assert (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [plain]})).json()["duplicate"] == 1
    address = {"lines": ["1 Merrion Square"], "city": "Dublin", "postal_code": "D02", "country": "IE"}
    full = {**plain, "address": address, "tax_exempt": True}
    r = (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [full]})).json()
    assert (r["accepted"], r["results"][0]["result"]["revision"]) == (1, 2)
    bad = {**plain, "id": "c-10", "address": {"city": "Dublin"}}
    assert (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [bad]})).json()["results"][0]["code"] == "field_required"
    stored = (await client.get("/v1/customers/c-9", headers=tenant_headers(tenant))).json()
    assert (stored["address"], stored["tax_exempt"]) == ({**address, "region": None}, True)
    events = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda s: len(s) >= 2, match=lambda e: e.tenant == tenant)
    latest = max(events, key=lambda e: e.data.revision).data
    assert (latest.tax_exempt, latest.address.city, latest.address.lines, latest.revision) == (True, "Dublin", ["1 Merrion Square"], 2)
    assert min(events, key=lambda e: e.data.revision).data.address is None


async def test_an_order_carries_its_setup_exemption_and_changes_follow_it(
    client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str, products: Products
) -> None:
    from billing_events.topics import ORDERS

    await add_customer(client, tenant)
    await products(tenant, "USR-SUP")
    order = {"id": "o-1", "customer_id": "c-1", "product_code": "USR-SUP", "quantity": "8", "start_date": "2026-10-14", "setup_exempt": True}
    assert (await client.post("/v1/orders", headers=tenant_headers(tenant), json={"records": [order]})).json()["accepted"] == 1
    r = await client.post("/v1/orders/o-1/changes", headers=tenant_headers(tenant), json={"id": "o-1-up", "quantity": "10", "effective_date": "2026-11-01"})
    assert r.status_code == 200 and r.json()["quantity"] == "10"
    r = await client.post("/v1/orders/o-1/cancellation", headers=tenant_headers(tenant), json={"id": "o-1-end", "effective_date": "2026-12-31"})
    assert r.status_code == 200 and r.json()["kind"] == "cancellation"
    events = await read_events(kafka_bootstrap, ORDERS.name, until=lambda s: len(s) >= 3, match=lambda e: e.tenant == tenant)
    by_type = {e.type: e.data for e in events}
    assert by_type["billing.subscription.ordered.v1"].setup_exempt is True
    assert str(by_type["billing.subscription.changed.v1"].quantity) == "10"
    assert str(by_type["billing.subscription.cancelled.v1"].effective_on) == "2026-12-31"
    r = await client.post("/v1/orders/o-1/changes", headers=tenant_headers(tenant), json={"id": "o-1-again", "quantity": "2"})
    assert (r.status_code, r.json()["code"]) == (409, "subscription_cancelled")
