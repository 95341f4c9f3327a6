"""Rating's catalogue at the edge: an order of a product the catalogue does not know is refused
(`unknown_product`), negative usage only for a product that allows credits (`negative_quantity`),
each batch checked with one statement; the catalogue arrives as rating's ProductPublished events."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import new_event
from billing_runtime.db import create_engine
from billing_runtime.testing import Publish, eventually, tenant_headers
from usage_ingest.catalogue import service as catalogue
from usage_ingest.ingest.schemas import OrderIn, UsageIn

from .conftest import Products, product_event

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def add_customer(client: httpx.AsyncClient, tenant: str) -> None:
    record = {"id": "c-1", "name": "Contoso Dental", "billing_email": "ap@contoso.example", "country": "US", "currency": "USD"}
    assert (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [record]})).json()["accepted"] == 1


def order(oid: str, code: str) -> dict[str, Any]:
    return {"id": oid, "customer_id": "c-1", "product_code": code, "quantity": "3", "start_date": "2026-10-01"}


def usage(rid: str, code: str, quantity: str) -> dict[str, Any]:
    return {"id": rid, "customer_id": "c-1", "product_code": code, "quantity": quantity, "timestamp": "2026-10-12T10:00:00Z"}


def outcomes(body: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    return [(r["status"], r["code"], r["field"]) for r in body["results"]]


async def test_an_order_of_a_product_the_catalogue_does_not_know_is_refused_until_it_arrives(
    client: httpx.AsyncClient, tenant: str, products: Products
) -> None:
    await add_customer(client, tenant)
    r = await client.post("/v1/orders", headers=tenant_headers(tenant), json={"records": [order("o-1", "NEW-PRD")]})
    assert r.status_code == 200
    assert outcomes(r.json()) == [("rejected", "unknown_product", "product_code")]
    assert "may not have reached usage-ingest yet" in r.json()["results"][0]["message"]
    assert (await client.get("/v1/orders/o-1", headers=tenant_headers(tenant))).status_code == 404  # nothing stored
    atomic = await client.post("/v1/orders?atomic=true", headers=tenant_headers(tenant), json={"records": [order("o-1", "NEW-PRD")]})
    assert atomic.status_code == 422 and atomic.headers["content-type"].startswith("application/problem+json")
    assert [(e["index"], e["code"], e["field"]) for e in atomic.json()["errors"]] == [(0, "unknown_product", "product_code")]
    # The product reaches usage-ingest: the same record posted again is accepted.
    await products(tenant, "NEW-PRD")
    again = await client.post("/v1/orders", headers=tenant_headers(tenant), json={"records": [order("o-1", "NEW-PRD")]})
    assert outcomes(again.json()) == [("accepted", None, None)]


async def test_a_partner_orders_its_own_products_and_the_distributors_not_another_partners(client: httpx.AsyncClient, tenant: str, products: Products) -> None:
    distributor, other = f"dist-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    await products(distributor, "AZ-VM", wholesale=True)
    await products(other, "OTHER-ONLY")
    await products(tenant, "OWN")
    await add_customer(client, tenant)
    batch = [order("o-own", "OWN"), order("o-wholesale", "AZ-VM"), order("o-foreign", "OTHER-ONLY")]
    r = await client.post("/v1/orders", headers=tenant_headers(tenant), json={"records": batch})
    assert outcomes(r.json()) == [("accepted", None, None), ("accepted", None, None), ("rejected", "unknown_product", "product_code")]


async def test_negative_usage_is_refused_unless_the_product_allows_credits(client: httpx.AsyncClient, tenant: str, products: Products) -> None:
    distributor = f"dist-{uuid.uuid4().hex[:6]}"
    await products(tenant, "CREDITS", allows_credits=True)
    await products(tenant, "NO-CREDITS")
    await products(distributor, "W-CREDITS", allows_credits=True, wholesale=True)
    # The partner's own product of a code wins over the distributor's: this one takes no credits.
    await products(distributor, "SHADOWED", allows_credits=True, wholesale=True)
    await products(tenant, "SHADOWED")
    await add_customer(client, tenant)
    batch = [
        usage("u-0", "UNKNOWN", "2"),  # positive usage of an unknown product: rating reports it unrated
        usage("u-1", "NO-CREDITS", "-1"),
        usage("u-2", "CREDITS", "-1.5"),
        usage("u-3", "W-CREDITS", "-4"),
        usage("u-4", "UNKNOWN", "-1"),
        usage("u-5", "SHADOWED", "-1"),
        usage("u-6", "NO-CREDITS", "0"),
    ]
    r = await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": batch})
    assert r.status_code == 200
    assert outcomes(r.json()) == [
        ("accepted", None, None),
        ("rejected", "negative_quantity", "quantity"),
        ("accepted", None, None),
        ("accepted", None, None),
        ("rejected", "negative_quantity", "quantity"),
        ("rejected", "negative_quantity", "quantity"),
        ("accepted", None, None),
    ]
    messages = {res["id"]: res["message"] for res in r.json()["results"] if res["status"] == "rejected"}
    assert "takes no credits" in messages["u-1"] and "not in rating's catalogue" in messages["u-4"]
    assert (await client.get("/v1/usage/u-1", headers=tenant_headers(tenant))).status_code == 404


async def test_an_atomic_usage_batch_with_negative_usage_is_a_422_naming_the_record_and_field(
    client: httpx.AsyncClient, tenant: str, products: Products
) -> None:
    await products(tenant, "NO-CREDITS")
    await add_customer(client, tenant)
    batch = [usage(f"a-{i}", "NO-CREDITS", "1") for i in range(3)] + [usage("a-3", "NO-CREDITS", "-2")]
    r = await client.post("/v1/usage?atomic=true", headers=tenant_headers(tenant), json={"records": batch})
    assert r.status_code == 422 and r.json()["code"] == "batch_rejected"
    assert [(e["index"], e["id"], e["code"], e["field"]) for e in r.json()["errors"]] == [(3, "a-3", "negative_quantity", "quantity")]
    for i in range(4):
        assert (await client.get(f"/v1/usage/a-{i}", headers=tenant_headers(tenant))).status_code == 404


@pytest.mark.consume(True)  # the broker path of the catalogue
async def test_the_catalogue_arrives_as_rating_publishes_it_and_the_latest_revision_wins(client: httpx.AsyncClient, tenant: str, publish: Publish) -> None:
    """Through the real broker: ProductPublished on billing.catalogue, applied by usage-ingest's consumer."""
    await add_customer(client, tenant)
    await publish(new_event(product_event(tenant, "LIVE", revision=1), source="rating", tenant=tenant))

    async def accepted(record: dict[str, Any]) -> bool:
        r = await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": [record]})
        return bool(r.json()["results"][0]["status"] == "accepted")

    async def order_accepted() -> bool:
        r = await client.post("/v1/orders", headers=tenant_headers(tenant), json={"records": [order("o-live", "LIVE")]})
        return bool(r.json()["accepted"] + r.json()["duplicate"])

    await eventually(order_accepted, "the order accepted once the product arrived")
    assert not await accepted(usage("credit-1", "LIVE", "-1"))
    # Revision 2 allows credits; revision 1 again (a late or replayed event) changes nothing.
    await publish(new_event(product_event(tenant, "LIVE", allows_credits=True, revision=2), source="rating", tenant=tenant))
    await eventually(lambda: accepted(usage("credit-2", "LIVE", "-1")), "credits allowed from revision 2")
    stale = new_event(product_event(tenant, "LIVE", allows_credits=False, revision=1), source="rating", tenant=tenant)
    await publish(stale)
    fence = f"{tenant}-fence"
    await publish(new_event(product_event(tenant, fence), source="rating", tenant=tenant))

    async def fence_known() -> bool:
        r = await client.post("/v1/orders", headers=tenant_headers(tenant), json={"records": [order("o-fence", fence)]})
        return bool(r.json()["accepted"] + r.json()["duplicate"])

    # One partition: once the product published after the stale event is known, the stale one was applied.
    await eventually(fence_known, "the event after the stale one applied")
    assert await accepted(usage("credit-3", "LIVE", "-1"))


async def test_a_batch_is_checked_with_one_statement_whatever_its_size(migrated: str, tenant: str, products: Products) -> None:
    await products(tenant, *(f"P-{i}" for i in range(50)))
    engine = create_engine(migrated, pool_size=1)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        for size in (1, 1000):
            records = [(i, OrderIn.model_validate(order(f"o-{i}", f"P-{i % 60}"))) for i in range(size)]
            statements.clear()
            async with AsyncSession(engine) as session, session.begin():
                refused = await catalogue.refusals(session, tenant, "order", records)
            assert len([s for s in statements if "catalogue_product" in s]) == 1, (size, statements)
            assert sorted({records[i][1].product_code for i in refused}) == ([] if size == 1 else [f"P-{i}" for i in range(50, 60)])
        # A usage batch without negative quantities (the usual case) and a kind the catalogue does
        # not judge cost no statement at all.
        statements.clear()
        async with AsyncSession(engine) as session, session.begin():
            positive = [(i, UsageIn.model_validate(usage(f"u-{i}", "UNKNOWN", "1"))) for i in range(1000)]
            assert await catalogue.refusals(session, tenant, "usage", positive) == {}
            assert await catalogue.refusals(session, tenant, "quantity", positive) == {}
        assert [s for s in statements if "catalogue_product" in s] == []
    finally:
        await engine.dispose()
