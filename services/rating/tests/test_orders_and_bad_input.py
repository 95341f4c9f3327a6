"""Orders, changes and cancellations posted to usage-ingest become subscriptions whose effective
dates rating shows; bad input is a 4xx with a stable code and nothing applied; a negative usage
record for a product without credits is refused at the edge, and dead-lettered by rating (the rest
keep flowing) if it arrives another way."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from billing_events import UsageRecorded, account_id, new_event, subscription_id
from billing_runtime.testing import Publish, dead_lettered, eventually
from billing_runtime.testing import tenant_headers as h

from .conftest import ordered

T = TypeVar("T")


async def setup(client: httpx.AsyncClient, ingest: httpx.AsyncClient, partner: str, **policy: Any) -> None:
    r = await client.put("/v1/seller", headers=h(partner), json={"currency": "USD", "country": "US"})
    assert r.status_code == 200, r.text
    body = {"name": "SIEM", "quantity_rule": "contracted", "unit_price": "100.00", "currency": "USD", "policy": policy}
    assert (await client.put("/v1/products/SIEM", headers=h(partner), json=body)).status_code == 200
    customer = {
        "id": "c1",
        "name": "Contoso",
        "billing_email": "ap@c.example",
        "country": "US",
        "currency": "USD",
        "address": {"lines": ["1 Main St"], "city": "Cedar Rapids", "postal_code": "52401", "country": "US"},
        "tax_exempt": True,
    }
    assert (await ingest.post("/v1/customers", headers=h(partner), json={"records": [customer]})).json()["accepted"] == 1


async def test_a_cancellation_shows_its_effective_dates_and_refuses_later_changes(client: httpx.AsyncClient, ingest: httpx.AsyncClient) -> None:
    partner = f"p-{uuid.uuid4().hex[:8]}"
    await setup(client, ingest, partner, commitment_months=12, notice_business_days=30, vendor_cutoff_day=10)
    ingest.app_clock.set(datetime.fromisoformat("2026-01-05T09:00:00+00:00"))  # type: ignore[attr-defined]  # the clock conftest hangs on the client
    order = {"id": "siem-1", "customer_id": "c1", "product_code": "SIEM", "quantity": "2", "start_date": "2026-01-05", "setup_exempt": True}
    assert (await ordered(ingest, headers=h(partner), json={"records": [order]}))["accepted"] == 1
    ingest.app_clock.set(datetime.fromisoformat("2026-03-16T09:00:00+00:00"))  # type: ignore[attr-defined]  # the clock conftest hangs on the client
    change = await ingest.post("/v1/orders/siem-1/changes", headers=h(partner), json={"id": "siem-1-up", "quantity": "3", "effective_date": "2026-03-20"})
    assert change.status_code == 200 and change.json()["status"] == "accepted", change.text
    again = await ingest.post("/v1/orders/siem-1/changes", headers=h(partner), json={"id": "siem-1-up", "quantity": "3", "effective_date": "2026-03-20"})
    assert again.json()["status"] == "duplicate"
    other = await ingest.post("/v1/orders/siem-1/changes", headers=h(partner), json={"id": "siem-1-up", "quantity": "4"})
    assert (other.status_code, other.json()["code"]) == (409, "id_conflict")
    bad = await ingest.post("/v1/orders/siem-1/changes", headers=h(partner), json={"id": "siem-1-neg", "quantity": "-1"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_value")
    missing = await ingest.post("/v1/orders/nope/changes", headers=h(partner), json={"id": "x", "quantity": "1"})
    assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")

    cancel = await ingest.post("/v1/orders/siem-1/cancellation", headers=h(partner), json={"id": "siem-1-cancel"})
    assert cancel.status_code == 200, cancel.text
    refused = await ingest.post("/v1/orders/siem-1/changes", headers=h(partner), json={"id": "siem-1-late", "quantity": "5"})
    assert (refused.status_code, refused.json()["code"]) == (409, "subscription_cancelled")
    twice = await ingest.post("/v1/orders/siem-1/cancellation", headers=h(partner), json={"id": "siem-1-cancel-2"})
    assert twice.status_code == 409

    sid = subscription_id(partner, "siem-1")

    async def cancelled() -> dict[str, Any] | None:
        r = await client.get(f"/v1/subscriptions/{sid}", headers=h(partner))
        return r.json() if r.status_code == 200 and r.json()["cancel_requested_on"] else None

    sub = await eventually(cancelled, "the cancellation in rating")
    # Requested 16 March: 30 business days' notice ends 28 April, after the 10th so one more
    # period (May), and the 12-month commitment from 5 January runs to 4 January 2027.
    assert {k: sub[k] for k in ("starts_on", "billing_starts_on", "cancel_requested_on", "commitment_ends_on", "ends_on", "last_billed_period")} == {
        "starts_on": "2026-01-05",
        "billing_starts_on": "2026-01-05",
        "cancel_requested_on": "2026-03-16",
        "commitment_ends_on": "2027-01-04",
        "ends_on": "2027-01-04",
        "last_billed_period": "2027-01",
    }
    assert [(s["quantity"], s["effective_on"]) for s in sub["steps"]] == [("2", "2026-01-05"), ("3", "2026-03-20")]
    assert sub["setup_exempt"] is True

    # A per-subscription override: no commitment for this one.
    r = await client.put(f"/v1/subscriptions/{sid}/policy", headers=h(partner), json={"commitment_months": 0})
    assert r.status_code == 200 and r.json()["ends_on"] == "2026-05-31" and r.json()["policy_overrides"] == {"commitment_months": 0}
    r = await client.put(f"/v1/subscriptions/{sid}/policy", headers=h(partner), json={"quantity_rule": "snapshot", "snapshot_day": 29})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_snapshot_day")
    assert (await client.get(f"/v1/subscriptions/{sid}", headers=h(partner))).json()["policy_overrides"] == {"commitment_months": 0}


async def test_catalogue_and_price_list_bad_input(client: httpx.AsyncClient, distributor: str) -> None:
    partner = f"p-{uuid.uuid4().hex[:8]}"
    assert (await client.put("/v1/seller", headers=h(partner), json={"currency": "EUR", "country": "IE", "time_zone": "Europe/Dublin"})).status_code == 200
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("/v1/seller", "put", {"time_zone": "Mars/Olympus"}, 422, "invalid_time_zone"),
        ("/v1/seller", "put", {"country": "XX"}, 422, "invalid_country"),
        ("/v1/products/SNAP", "put", {"name": "x", "quantity_rule": "snapshot", "snapshot_day": 29}, 422, "invalid_snapshot_day"),
        ("/v1/products/SNAP", "put", {"name": "x", "quantity_rule": "snapshot"}, 422, "invalid_snapshot_day"),
        ("/v1/products/ADV", "put", {"name": "x", "quantity_rule": "usage_sum", "policy": {"timing": "advance"}}, 422, "invalid_policy"),
        ("/v1/products/USD1", "put", {"name": "x", "quantity_rule": "contracted", "unit_price": "1", "currency": "USD"}, 422, "price_currency_mismatch"),
        (
            "/v1/price-list/NOPE",
            "put",
            {"effective_from": "2026-01-01", "currency": "EUR", "price": {"model": "per_unit", "unit_price": "1"}},
            404,
            "product_not_found",
        ),
    ]
    for path, _, body, status, code in cases:
        r = await client.put(path, headers=h(partner), json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (path, body, r.text)
    assert (await client.get("/v1/products/SNAP", headers=h(partner))).status_code == 404
    assert (await client.get("/v1/seller", headers=h(partner))).json()["time_zone"] == "Europe/Dublin"

    ok = {"name": "Mailbox", "quantity_rule": "contracted"}
    assert (await client.put("/v1/products/MBX", headers=h(partner), json=ok)).status_code == 200
    wrong_currency = {"effective_from": "2026-01-01", "currency": "USD", "price": {"model": "per_unit", "unit_price": "1"}}
    r = await client.put("/v1/price-list/MBX", headers=h(partner), json=wrong_currency)
    assert (r.status_code, r.json()["code"]) == (422, "price_currency_mismatch")
    bad_model = {"effective_from": "2026-01-01", "currency": "EUR", "price": {"model": "volume", "tiers": []}}
    r = await client.put("/v1/price-list/MBX", headers=h(partner), json=bad_model)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_price_model")
    assert (await client.get("/v1/price-list", headers=h(partner))).json()["items"] == []
    good = {"effective_from": "2026-11-01", "currency": "EUR", "price": {"model": "package", "package_size": "10", "package_price": "20.00"}}
    first = await client.put("/v1/price-list/MBX", headers=h(partner), json=good)
    second = await client.put("/v1/price-list/MBX", headers=h(partner), json=good)
    assert first.status_code == 200 and first.json() == second.json()
    r = await client.put("/v1/markup-rule", headers=h(distributor), json={"effective_from": "2026-01-01", "markup_percent": "10"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_price_model")
    categories = (await client.get("/v1/categories", headers=h(partner))).json()["items"]
    assert "Remote Monitoring and Management" in [c["name"] for c in categories] and len(categories) == 9

    r = await client.put("/v1/discounts/d1", headers=h(partner), json={"scope": "invoice", "account_id": "nobody", "percent": "10", "first_period": "2026-10"})
    assert (r.status_code, r.json()["code"]) == (404, "account_not_found")
    r = await client.put("/v1/discounts/d1", headers=h(partner), json={"scope": "product", "product_code": "MBX", "percent": "150", "first_period": "2026-10"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_discount")
    r = await client.put("/v1/discounts/d1", headers=h(partner), json={"scope": "product", "product_code": "MBX", "percent": 10.5, "first_period": "2026-10"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_discount")
    r = await client.put("/v1/discounts/d1", headers=h(partner), json={"scope": "product", "product_code": "GHOST", "percent": "5", "first_period": "2026-10"})
    assert (r.status_code, r.json()["code"]) == (404, "product_not_found")
    assert (await client.get("/v1/discounts", headers=h(partner))).json()["items"] == []


async def test_negative_usage_without_credits_is_refused_at_the_edge_and_dead_lettered_if_it_comes_another_way(
    client: httpx.AsyncClient, ingest: httpx.AsyncClient, kafka_bootstrap: str, publish: Publish
) -> None:
    """usage-ingest refuses negative usage of a product without credits (it knows rating's
    catalogue from ProductPublished); rating still dead-letters such an event should one reach it
    another way, and applies the rest."""
    partner = f"p-{uuid.uuid4().hex[:8]}"
    for code, credits in (("BKP", False), ("CREDITS", True)):
        body = {"name": code, "quantity_rule": "usage_sum", "unit_price": "0.10", "currency": "USD", "policy": {"allows_credits": credits}}
        assert (await client.put(f"/v1/products/{code}", headers=h(partner), json=body)).status_code == 200
    customer = {"id": "c1", "name": "C", "billing_email": "ap@c.example", "country": "US", "currency": "USD"}
    await ingest.post("/v1/customers", headers=h(partner), json={"records": [customer]})
    credit = {"id": "credit", "customer_id": "c1", "product_code": "CREDITS", "quantity": "-5", "timestamp": "2026-10-05T00:00:00Z"}

    async def credit_accepted() -> bool:
        # Until usage-ingest has heard of CREDITS, its negative usage is refused too (posted again).
        r = await ingest.post("/v1/usage", headers=h(partner), json={"records": [credit]})
        return bool(r.json()["accepted"] + r.json()["duplicate"])

    await eventually(credit_accepted, "the credit accepted once usage-ingest knows CREDITS", interval=0.1)
    records = [
        {"id": "neg", "customer_id": "c1", "product_code": "BKP", "quantity": "-5", "timestamp": "2026-10-05T00:00:00Z"},
        {"id": "pos", "customer_id": "c1", "product_code": "BKP", "quantity": "7", "timestamp": "2026-10-06T00:00:00Z"},
    ]
    answer = (await ingest.post("/v1/usage", headers=h(partner), json={"records": records})).json()
    assert [(r["status"], r["code"], r["field"]) for r in answer["results"]] == [("rejected", "negative_quantity", "quantity"), ("accepted", None, None)]
    acct = account_id(partner, "c1")
    # The same negative record as another producer might publish it: rating dead-letters it alone.
    smuggled = UsageRecorded(
        record_id="neg-direct",
        account_id=acct,
        partner_id=partner,
        product_code="BKP",
        quantity=Decimal("-5"),
        occurred_at=datetime.fromisoformat("2026-10-07T00:00:00+00:00"),
    )
    smuggled_event = new_event(smuggled, source="elsewhere", tenant=partner)
    await publish(smuggled_event)

    async def applied() -> dict[str, str] | None:
        r = await client.get(f"/v1/accounts/{acct}/charges?period=2026-10", headers=h(partner))
        lines = {line["product_code"]: line["amount"]["amount"] for line in r.json().get("lines", [])} if r.status_code == 200 else {}
        return lines if "BKP" in lines and "CREDITS" in lines else None

    assert await eventually(applied, "the good records") == {"BKP": "0.70", "CREDITS": "-0.50"}
    dead = await dead_lettered(kafka_bootstrap, smuggled_event.id, service="rating")
    assert "NegativeQuantity" in dead["dlq_error"]


async def test_late_usage_bills_in_the_next_open_period_with_its_own_service_dates_and_discounts_apply(
    client: httpx.AsyncClient, ingest: httpx.AsyncClient, app: Any, kafka_bootstrap: str
) -> None:
    from decimal import Decimal

    from billing_events.topics import PERIODS
    from billing_runtime.testing import read_events

    partner = f"p-{uuid.uuid4().hex[:8]}"
    body = {"name": "Backup per GB", "quantity_rule": "usage_sum", "unit_price": "0.10", "currency": "USD"}
    assert (await client.put("/v1/products/BKP", headers=h(partner), json=body)).status_code == 200
    customer = {"id": "c1", "name": "C", "billing_email": "a@c.example", "country": "US", "currency": "USD"}
    await ingest.post("/v1/customers", headers=h(partner), json={"records": [customer]})
    acct = account_id(partner, "c1")

    def record(rid: str, qty: str, when: str) -> dict[str, Any]:
        return {"id": rid, "customer_id": "c1", "product_code": "BKP", "quantity": qty, "timestamp": when}

    await ingest.post("/v1/usage", headers=h(partner), json={"records": [record("oct-1", "100", "2026-10-10T00:00:00Z")]})

    async def total(period: str, want: str) -> bool:
        r = await client.get(f"/v1/accounts/{acct}/charges?period={period}", headers=h(partner))
        return r.status_code == 200 and r.json()["total"]["amount"] == want

    await eventually(lambda: total("2026-10", "10.00"), "October's usage")
    assert (await client.post("/v1/bill-runs", headers=h(partner), json={"period": "2026-10"})).status_code == 201
    # October is closed; a record of 20 October arrives now, with November's usage.
    late = [record("oct-late", "50", "2026-10-20T00:00:00Z"), record("nov-1", "30", "2026-11-03T00:00:00Z")]
    await ingest.post("/v1/usage", headers=h(partner), json={"records": late})
    discount = {"scope": "invoice", "account_id": acct, "percent": "10", "first_period": "2026-11", "periods": 1}
    r = await client.put("/v1/discounts/welcome", headers=h(partner), json=discount)
    assert r.status_code == 200 and r.json()["percent"] == "10"
    assert (await client.put("/v1/discounts/welcome", headers=h(partner), json=discount)).json() == r.json()
    conflict = await client.put("/v1/discounts/welcome", headers=h(partner), json={**discount, "percent": "20"})
    assert (conflict.status_code, conflict.json()["code"]) == (409, "discount_conflict")
    await eventually(lambda: total("2026-11", "7.20"), "the late record in November's live spend")  # (5.00 + 3.00) × 0.9

    app.state.runtime.clock.set(datetime.fromisoformat("2026-12-02T09:00:00+00:00"))
    assert (await client.post("/v1/bill-runs", headers=h(partner), json={"period": "2026-11"})).status_code == 201
    assert (await client.post("/v1/bill-runs", headers=h(partner), json={"period": "2026-11"})).status_code == 200
    events = await read_events(kafka_bootstrap, PERIODS.name, until=lambda s: len(s) >= 2, match=lambda e: e.tenant == partner)
    november = next(e.data for e in events if e.data.period_start.month == 11)
    got = [(str(line.service_period_start), line.late, line.kind, line.amount.amount) for line in november.lines]
    assert got == [
        ("2026-10-01", True, "usage", Decimal("5.00")),
        ("2026-11-01", False, "usage", Decimal("3.00")),
        ("2026-11-01", False, "discount", Decimal("-0.8")),
    ]
    october = next(e.data for e in events if e.data.period_start.month == 10)
    assert [line.amount.amount for line in october.lines] == [Decimal("10.00")]


async def test_a_buyer_sees_its_subscriptions_with_quantity_and_term(client: httpx.AsyncClient, ingest: httpx.AsyncClient) -> None:
    """What the customer portal's account summary shows: each subscription's quantity in force
    today and whether it bills monthly or annually."""
    partner = f"p-{uuid.uuid4().hex[:8]}"
    await setup(client, ingest, partner)
    annual = {
        "name": "Firewall licence",
        "quantity_rule": "contracted",
        "unit_price": "1200.00",
        "currency": "USD",
        "unit": "device",
        "policy": {"interval": "year", "timing": "advance"},
    }
    assert (await client.put("/v1/products/FW-YEAR", headers=h(partner), json=annual)).status_code == 200
    ingest.app_clock.set(datetime.fromisoformat("2026-01-05T09:00:00+00:00"))  # type: ignore[attr-defined]  # the clock conftest hangs on the client
    orders = [
        {"id": "siem-1", "customer_id": "c1", "product_code": "SIEM", "quantity": "2", "start_date": "2026-01-05"},
        {"id": "fw-1", "customer_id": "c1", "product_code": "FW-YEAR", "quantity": "3", "start_date": "2026-01-05"},
    ]
    posted = await ordered(ingest, headers=h(partner), json={"records": orders})  # a repeat answers the first accepted order "duplicate"
    assert [r["status"] in ("accepted", "duplicate") for r in posted["results"]] == [True, True], posted
    change = {"id": "siem-1-up", "quantity": "5", "effective_date": "2026-01-20"}
    assert (await ingest.post("/v1/orders/siem-1/changes", headers=h(partner), json=change)).status_code == 200
    path = f"/v1/accounts/{account_id(partner, 'c1')}/subscriptions"

    async def both() -> list[dict[str, Any]] | None:
        items = (await client.get(path, headers=h(partner))).json()["items"]
        return items if len(items) == 2 and any(i["quantity"] == "5" for i in items) else None

    items = {i["product_code"]: i for i in await eventually(both, "both subscriptions in rating")}
    assert {k: items["FW-YEAR"][k] for k in ("product_name", "quantity", "unit", "term", "timing", "status")} == {
        "product_name": "Firewall licence",
        "quantity": "3",
        "unit": "device",
        "term": "annual",
        "timing": "advance",
        "status": "active",
    }
    assert (items["SIEM"]["quantity"], items["SIEM"]["term"], items["SIEM"]["starts_on"]) == ("5", "monthly", "2026-01-05")
    assert (await client.get(f"/v1/accounts/{account_id(partner, 'nobody')}/subscriptions", headers=h(partner))).json()["items"] == []
    assert (await client.get(path, headers=h(f"{partner}-other"))).json()["items"] == []
