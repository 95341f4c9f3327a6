"""Historic orders, changes and cancellations (`POST /v1/admin/order-history`): posted with the dates
the customer asked, emitted with those dates for rating, idempotent by the partner's ids, all or
nothing, and never into a period rating has closed (learnt from its BillRunClosed events)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any, Literal

import httpx
import pytest
from sqlalchemy import text

from billing_events import BillRunClosed, new_event
from billing_runtime.db import create_engine
from billing_runtime.testing import Delivery, deliver, tenant_headers

from .conftest import Products

PATH = "/v1/admin/order-history"
# Rating's events are handed to usage-ingest in process (`deliver`) and what it emits is read from
# its outbox rows: no test here needs the broker's consumer (no JoinGroup wait per test).
pytestmark = pytest.mark.consume(False)


async def setup(client: httpx.AsyncClient, tenant: str, products: Products) -> None:
    record = {"id": "c-1", "name": "Fabrikam Law", "billing_email": "ap@fabrikam.example", "country": "US", "currency": "USD"}
    assert (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [record]})).json()["accepted"] == 1
    await products(tenant, "USR-SUP")


def order(oid: str, start: str, requested: str, *, quantity: str = "8", code: str = "USR-SUP") -> dict[str, Any]:
    return {"kind": "order", "id": oid, "customer_id": "c-1", "product_code": code, "quantity": quantity, "start_date": start, "requested_at": requested}


# 2023: no other suite closes it. Rating's suites run the distributor's wholesale runs of 2026, and
# a wholesale run closes its month for every partner (in the database the suites share).
def history() -> list[dict[str, Any]]:
    return [
        order("o-1", "2023-10-14", "2023-10-14T09:30:00+02:00"),
        {"kind": "change", "id": "ch-1", "order_id": "o-1", "quantity": "12", "effective_date": "2023-10-17", "requested_at": "2023-10-16T15:00:00Z"},
        {"kind": "cancellation", "id": "cx-1", "order_id": "o-1", "requested_at": "2023-11-03T08:00:00Z"},
    ]  # fmt: skip


async def outbox(migrated: str, tenant: str) -> list[tuple[str, dict[str, Any]]]:
    engine = create_engine(migrated, pool_size=1)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_type, value FROM usage_ingest.outbox WHERE event_type LIKE 'billing.subscription.%' AND headers @> CAST(:h AS jsonb) ORDER BY id"
            ),
            {"h": json.dumps([["ce_tenant", tenant]])},
        )
        found = [(r.event_type, json.loads(r.value)) for r in rows]
    await engine.dispose()
    return found


async def close(
    client: httpx.AsyncClient, seller: str, first: date, last: date, tier: Literal["retail", "wholesale"] = "retail", tenant: str | None = None
) -> Delivery:
    """Rating's BillRunClosed delivered in process to usage-ingest (the harness's `deliver`: its
    inbox, its transaction, its handler), as if rating had published it."""
    data = BillRunClosed(
        bill_run_id=f"run-{uuid.uuid4().hex[:8]}", seller_id=seller, tier=tier, period_start=first, period_end=last, closed_at=datetime.now(UTC)
    )
    return await deliver(client, new_event(data, source="rating", tenant=tenant or seller))


async def test_history_is_emitted_with_its_dates_once(client: httpx.AsyncClient, tenant: str, products: Products, migrated: str) -> None:
    await setup(client, tenant, products)
    r = await client.post(PATH, headers=tenant_headers(tenant), json={"records": history()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (3, 0, 0)
    assert body["results"][2]["result"]["effective_on"] == "2023-11-03"  # a cancellation without a date: the request's day
    events = await outbox(migrated, tenant)
    assert [t for t, _ in events] == ["billing.subscription.ordered.v1", "billing.subscription.changed.v1", "billing.subscription.cancelled.v1"]
    ordered, changed, cancelled = (data for _, data in events)
    assert (ordered["ordered_at"], ordered["start_on"]) == ("2023-10-14T09:30:00+02:00", "2023-10-14")
    assert (changed["requested_at"], changed["effective_on"], changed["quantity"]) == ("2023-10-16T15:00:00Z", "2023-10-17", "12")
    assert cancelled["requested_at"] == "2023-11-03T08:00:00Z" and cancelled["subscription_id"] == ordered["subscription_id"]
    order = (await client.get("/v1/orders/o-1", headers=tenant_headers(tenant))).json()
    assert order["requested_at"].startswith("2023-10-14T07:30:00")

    again = await client.post(PATH, headers=tenant_headers(tenant), json={"records": history()})
    assert (again.status_code, again.json()["duplicate"]) == (200, 3)
    assert [r["result"] for r in again.json()["results"]] == [r["result"] for r in body["results"]]
    assert len(await outbox(migrated, tenant)) == 3  # nothing emitted twice

    changed_history = history()
    changed_history[1]["quantity"] = "13"
    conflict = await client.post(PATH, headers=tenant_headers(tenant), json={"records": changed_history})
    assert conflict.status_code == 422 and conflict.json()["code"] == "batch_rejected"
    assert [(e["index"], e["code"]) for e in conflict.json()["errors"]] == [(1, "id_conflict")]
    # The live route sees the cancellation imported: the subscription takes no further change.
    live = await client.post("/v1/orders/o-1/changes", headers=tenant_headers(tenant), json={"id": "ch-live", "quantity": "3"})
    assert (live.status_code, live.json()["code"]) == (409, "subscription_cancelled")


async def test_nothing_goes_into_a_closed_period(client: httpx.AsyncClient, tenant: str, products: Products, migrated: str) -> None:
    await setup(client, tenant, products)
    await close(client, tenant, date(2023, 10, 1), date(2023, 10, 31))
    await close(client, f"other-{tenant}", date(2023, 11, 1), date(2023, 11, 30))  # another partner's run: not ours
    r = await client.post(PATH, headers=tenant_headers(tenant), json={"records": history()})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "batch_rejected"
    # The order and the change are dated in October (closed); the November cancellation has no order then.
    assert [(e["index"], e["code"], e["field"]) for e in r.json()["errors"]] == [
        (0, "period_closed", "requested_at"),
        (1, "period_closed", "requested_at"),
        (2, "order_not_found", "order_id"),
    ]
    assert "2023-10-01 to 2023-10-31" in r.json()["errors"][0]["message"]
    assert (await client.get("/v1/orders/o-1", headers=tenant_headers(tenant))).status_code == 404  # nothing written
    assert await outbox(migrated, tenant) == []

    # November is open for this partner: history from then on is taken.
    november = [order("o-2", "2023-11-02", "2023-11-01T10:00:00Z", quantity="2")]
    assert (await client.post(PATH, headers=tenant_headers(tenant), json={"records": november})).json()["accepted"] == 1
    # A start date inside the closed month is refused too, on its own field.
    back = [{**november[0], "id": "o-3", "start_date": "2023-10-20"}]
    r = await client.post(PATH, headers=tenant_headers(tenant), json={"records": back})
    assert [(e["code"], e["field"]) for e in r.json()["errors"]] == [("period_closed", "start_date")]


async def test_a_wholesale_run_closes_the_period_for_every_partner(client: httpx.AsyncClient, tenant: str, products: Products, migrated: str) -> None:
    await setup(client, tenant, products)
    # A month no other test imports into: the distributor's run is everyone's.
    await close(client, f"distributor-{tenant}", date(2024, 2, 1), date(2024, 2, 29), tier="wholesale")
    item = {
        "kind": "order",
        "id": "o-w",
        "customer_id": "c-1",
        "product_code": "USR-SUP",
        "quantity": "1",
        "start_date": "2024-03-01",
        "requested_at": "2024-02-20T10:00:00Z",
    }
    r = await client.post(PATH, headers=tenant_headers(tenant), json={"records": [item]})
    assert [(e["code"], e["field"]) for e in r.json()["errors"]] == [("period_closed", "requested_at")]


@pytest.mark.parametrize(
    "item,code,field",
    [
        ({"kind": "change", "id": "ch-9", "order_id": "nope", "quantity": "1", "requested_at": "2023-11-05T10:00:00Z"}, "order_not_found", "order_id"),
        ({"kind": "change", "id": "ch-9", "order_id": "o-1", "quantity": "1", "requested_at": "2023-10-01T10:00:00Z"}, "invalid_value", "requested_at"),
        ({"kind": "cancellation", "id": "cx-9", "order_id": "o-1", "requested_at": "2099-01-01T10:00:00Z"}, "not_historic", "requested_at"),
        ({"kind": "cancellation", "id": "cx-9", "order_id": "o-1", "requested_at": "2023-11-05T10:00:00"}, "timezone_required", "cancellation.requested_at"),
        ({"kind": "refund", "id": "r-1"}, "invalid_value", None),
        (order("o-9", "2023-11-01", "2023-11-01T10:00:00Z", code="NOPE"), "unknown_product", "product_code"),
    ],
)  # fmt: skip
async def test_bad_history_is_refused_with_a_code(
    client: httpx.AsyncClient, tenant: str, products: Products, item: dict[str, Any], code: str, field: str | None
) -> None:
    await setup(client, tenant, products)
    batch = [history()[0], item]
    r = await client.post(PATH, headers=tenant_headers(tenant), json={"records": batch})
    assert r.status_code == 422, r.text
    assert [(e["index"], e["code"], e["field"]) for e in r.json()["errors"]] == [(1, code, field)]


async def test_a_bill_run_of_another_tenant_is_not_applied(client: httpx.AsyncClient, migrated: str, tenant: str) -> None:
    """The runtime checks BillRunClosed's seller against its envelope (`tenant_field`): dead-lettered, nothing kept."""
    delivery = await close(client, tenant, date(2023, 9, 1), date(2023, 9, 30), tenant=f"someone-else-{tenant}")
    assert delivery.codes == ["foreign_tenant"] and not delivery.applied
    engine = create_engine(migrated, pool_size=1)
    async with engine.connect() as conn:
        kept = await conn.scalar(text("SELECT count(*) FROM usage_ingest.closed_period WHERE seller_id = :s"), {"s": tenant})
    await engine.dispose()
    assert kept == 0


async def test_the_partners_customer_id_finds_its_account(client: httpx.AsyncClient, tenant: str, products: Products) -> None:
    """`GET /v1/accounts/by-customer/{id}`, and the same id in place of the account in any account
    route (`/v1/accounts/by-customer/{id}/…`), under the caller's tenant only."""
    await setup(client, tenant, products)
    found = await client.get("/v1/accounts/by-customer/c-1", headers=tenant_headers(tenant))
    assert found.status_code == 200, found.text
    account = found.json()["account_id"]
    assert found.json() == {"customer_id": "c-1", "account_id": account, "name": "Fabrikam Law", "revision": 1}
    other = await client.get("/v1/accounts/by-customer/c-1", headers=tenant_headers(f"x{tenant}"))
    assert (other.status_code, other.json()["code"]) == (404, "customer_not_found")

    by_account = await client.get(f"/v1/accounts/{account}/billing-profile", headers=tenant_headers(tenant))
    by_customer = await client.get("/v1/accounts/by-customer/c-1/billing-profile", headers=tenant_headers(tenant))
    assert by_customer.status_code == 200 and by_customer.json() == by_account.json()
    theirs = await client.get("/v1/accounts/by-customer/c-1/billing-profile", headers=tenant_headers(f"x{tenant}"))
    assert theirs.status_code == 404

    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/v1/accounts/by-customer/{customer_id}/billing-profile" in paths
    assert [p["name"] for p in paths["/v1/accounts/by-customer/{customer_id}/billing-profile"]["get"]["parameters"] if p["in"] == "path"] == ["customer_id"]


async def test_the_openapi_documents_what_the_read_routes_answer(client: httpx.AsyncClient) -> None:
    """Customers, orders and changes have response models: the OpenAPI names every field, not a bare object."""
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]

    def answered(path: str, method: str) -> str:
        ref: str = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[-1]

    assert answered("/v1/customers", "get") == "CustomerPage"
    assert {"external_id", "account_id", "billing_email", "address", "revision"} <= set(schemas[answered("/v1/customers/{customer_id}", "get")]["properties"])
    assert {"order_id", "subscription_id", "quantity", "start_on", "requested_at"} <= set(schemas[answered("/v1/orders/{order_id}", "get")]["properties"])
    assert answered("/v1/orders/{order_id}/changes", "post") == answered("/v1/orders/{order_id}/cancellation", "post") == "OrderChangeOut"
    assert answered("/v1/accounts/by-customer/{customer_id}", "get") == "AccountRef"
