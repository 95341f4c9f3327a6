"""The catalogue over HTTP, against a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from billing_events import ProductPublished
from billing_events.topics import CATALOGUE
from billing_runtime.testing import all_events, read_events, tenant_headers
from rating.catalogue.models import QuantityRule

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


def product(**changes: Any) -> dict[str, Any]:
    body = {
        "name": "User support",
        "unit_price": "35.00",
        "currency": "USD",
        "description": None,
        "category": "Support",
        "quantity_rule": "latest",
    }
    return {**body, **changes}


async def test_put_is_idempotent_and_a_change_is_stored(client: httpx.AsyncClient, app: FastAPI, tenant: str) -> None:
    first = await client.put("/v1/products/USR-SUP", headers=tenant_headers(tenant), json=product())
    assert first.status_code == 200, first.text
    assert first.json() == {
        "code": "USR-SUP",
        "name": "User support",
        "description": None,
        "category": "Support",
        "unit_price": "35.00",
        "currency": "USD",
        "quantity_rule": "latest",
        "updated_at": first.json()["updated_at"],
        "unit": None,
        "tax_category": None,
        "kind": "recurring",
        "policy": {
            "quantity_rule": "latest",
            "snapshot_day": None,
            "timing": "arrears",
            "interval": "month",
            "proration": "none",
            "first_period": "order_period",
            "setup_product": None,
            "commitment_months": 0,
            "notice_business_days": 0,
            "vendor_cutoff_day": None,
            "change_cutoff_business_days": 0,
            "true_up": False,
            "allows_credits": False,
        },
    }
    clock = app.state.runtime.clock
    clock.set(clock.now() + timedelta(hours=1))
    again = await client.put("/v1/products/USR-SUP", headers=tenant_headers(tenant), json=product())
    assert again.json() == first.json()  # updated_at included: nothing changed

    changed = await client.put("/v1/products/USR-SUP", headers=tenant_headers(tenant), json=product(unit_price="36.50"))
    assert changed.json()["unit_price"] == "36.50"
    assert changed.json()["updated_at"] != first.json()["updated_at"]
    fetched = await client.get("/v1/products/USR-SUP", headers=tenant_headers(tenant))
    assert fetched.json() == changed.json()


async def test_bad_prices_currencies_and_rules(client: httpx.AsyncClient, tenant: str) -> None:
    cases = [
        (product(unit_price=35.5), "invalid_price"),
        (product(unit_price="-1.00"), "invalid_price"),
        (product(unit_price="thirty"), "invalid_price"),
        (product(currency="usd"), "invalid_currency"),
        (product(currency="DOLLAR"), "invalid_currency"),
        (product(currency="ZZZ"), "unknown_currency"),  # three capitals, but not ISO 4217: refused at the edge
        (product(currency="XAU"), "unknown_currency"),  # ISO 4217, but no minor unit (nothing is billed in gold): refused at the edge
        (product(quantity_rule="peak_of_the_moon"), "validation_error"),
        (product(name=""), "validation_error"),
        ({"name": "x"}, "validation_error"),
    ]
    for body, code in cases:
        r = await client.put("/v1/products/P-1", headers=tenant_headers(tenant), json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code, body
    assert (await client.get("/v1/products/P-1", headers=tenant_headers(tenant))).status_code == 404


async def test_get_unknown_and_other_tenants_product(client: httpx.AsyncClient, tenant: str) -> None:
    await client.put("/v1/products/MINE", headers=tenant_headers(tenant), json=product())
    r = await client.get("/v1/products/MINE", headers=tenant_headers(tenant + "-x"))
    assert r.status_code == 404
    assert r.json()["code"] == "product_not_found"


async def test_list_pages_with_a_cursor(client: httpx.AsyncClient, tenant: str) -> None:
    for code, rule in (("C", QuantityRule.USAGE_SUM), ("A", QuantityRule.CONTRACTED), ("B", QuantityRule.LATEST)):
        await client.put(f"/v1/products/{code}", headers=tenant_headers(tenant), json=product(quantity_rule=rule.value))
    first = (await client.get("/v1/products?limit=2", headers=tenant_headers(tenant))).json()
    assert [p["code"] for p in first["items"]] == ["A", "B"]
    assert first["next_cursor"] == "B"
    rest = (await client.get(f"/v1/products?limit=2&after={first['next_cursor']}", headers=tenant_headers(tenant))).json()
    assert [(p["code"], p["quantity_rule"]) for p in rest["items"]] == [("C", "usage_sum")]
    assert rest["next_cursor"] is None


async def test_a_new_or_changed_product_is_published_once_per_revision(client: httpx.AsyncClient, tenant: str, distributor: str, kafka_bootstrap: str) -> None:
    """ProductPublished on billing.catalogue (usage-ingest's projection): a PUT that changes
    nothing publishes nothing; the distributor's products are the wholesale ones."""
    assert (await client.put("/v1/products/CRD", headers=tenant_headers(tenant), json=product(quantity_rule="usage_sum"))).status_code == 200
    assert (await client.put("/v1/products/CRD", headers=tenant_headers(tenant), json=product(quantity_rule="usage_sum"))).status_code == 200
    credits = product(quantity_rule="usage_sum", policy={"allows_credits": True})
    assert (await client.put("/v1/products/CRD", headers=tenant_headers(tenant), json=credits)).status_code == 200
    assert (await client.put("/v1/products/CRD", headers=tenant_headers(distributor), json=product(quantity_rule="usage_sum"))).status_code == 200

    def seen(e: Any) -> bool:
        # The topic also carries the distributor's BillRunClosed events (other tests' runs).
        return e.tenant in (tenant, distributor) and isinstance(e.data, ProductPublished) and e.data.product_code == "CRD"

    await read_events(kafka_bootstrap, CATALOGUE.name, until=lambda s: len(s) >= 3, match=seen, timeout=60)
    events = await all_events(kafka_bootstrap, CATALOGUE.name, match=seen)
    assert [(e.tenant, e.data.revision, e.data.allows_credits, e.data.wholesale, e.subject) for e in events] == [
        (tenant, 1, False, False, "CRD"),
        (tenant, 2, True, False, "CRD"),
        (distributor, 1, False, True, "CRD"),
    ]
    assert events[0].data.kind == "usage" and events[0].data.quantity_rule == "usage_sum"


async def test_the_openapi_documents_the_lists(client: httpx.AsyncClient) -> None:
    """Products, prices, categories and an account's subscriptions are documented field by field."""
    doc = (await client.get("/openapi.json")).json()
    refs = {
        path: doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        for path in ("/v1/products", "/v1/price-list", "/v1/categories", "/v1/accounts/{account_id}/subscriptions")
    }
    assert refs == {
        "/v1/products": "ProductPage",
        "/v1/price-list": "PriceList",
        "/v1/categories": "CategoryList",
        "/v1/accounts/{account_id}/subscriptions": "AccountSubscriptionPage",
    }
    assert doc["components"]["schemas"]["ProductPage"]["properties"]["items"]["items"]["$ref"].endswith("/ProductOut")
