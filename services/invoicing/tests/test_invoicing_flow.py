"""invoicing against a real PostgreSQL and a real Tansu broker: events in, API and events out."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from invoicing_testkit import (
    EXAMPLE_A,
    buyer_known,
    customer,
    event,
    example_a_lines,
    invoices,
    payment,
    period_closed,
    poll,
    put_seller,
    rated,
    raw_messages,
    wait_for_invoices,
)

from billing_events import InvoiceIssued, account_id, derived_event_id
from billing_events.topics import DEAD_LETTER, INVOICES
from billing_runtime.testing import publish_events, read_events, tenant_headers
from invoicing.config import Settings
from invoicing.seller.service import default_prefix
from invoicing.tax.engine import NOTES, Scheme

SEP_START, SEP_END = date(2026, 9, 1), date(2026, 9, 30)
NOV_START, NOV_END = date(2026, 11, 1), date(2026, 11, 30)


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_worked_example_a(client: httpx.AsyncClient, tenant: str, settings: Settings, kafka_bootstrap: str) -> None:
    await put_seller(client, tenant)
    buyer = account_id(tenant, "northwind-it")
    await publish_events(client, event(customer(tenant, "northwind-it", "Northwind IT"), tenant))
    await buyer_known(settings, buyer)
    await publish_events(client, event(period_closed(tenant, buyer, example_a_lines()), tenant))

    [summary] = await wait_for_invoices(client, tenant, 1)
    assert {k: summary[k] for k in summary if k != "id"} == {
        "number": "NW-000001",
        "buyer_account_id": buyer,
        "buyer_name": "Northwind IT",
        "description": "Services October 2026",
        "period_start": "2026-10-01",
        "period_end": "2026-10-31",
        "issued_on": "2026-11-02",
        "due_on": "2026-12-05",
        "paid_on": None,
        "status": "open",
        "currency": "USD",
        "net_total": "1516.25",
        "tax_total": "0.00",
        "total": "1516.25",
        "amount_paid": "0.00",
        "credited_total": "0.00",
        "open_amount": "1516.25",
    }

    r = await client.get(f"/v1/invoices/{summary['id']}", headers=tenant_headers(tenant))
    assert r.status_code == 200, r.text
    detail = r.json()
    assert [(li["product_code"], li["quantity"], li["unit_price"], li["net"]) for li in detail["lines"]] == [
        (code, qty, price, net)
        for (code, qty, price, _), net in zip(EXAMPLE_A, ["525.00", "255.00", "225.00", "74.25", "200.00", "94.50", "90.00", "52.50"], strict=True)
    ]
    # A US distributor: outside the scope of EU and UK VAT.
    assert {(li["tax_rate"], li["tax_category"], li["tax_scheme"]) for li in detail["lines"]} == {("0", "O", "outside_scope")}
    assert detail["lines"][0]["service_period_start"] == "2026-10-01"
    assert detail["seller"] == {
        "account_id": tenant,
        "name": "Distributor Inc.",
        "country": "US",
        "vat_id": None,
        "email": "billing@distributor.example",
        "address": None,
        "business": True,
        "registration": None,
    }
    assert detail["buyer"] == {
        "account_id": buyer,
        "name": "Northwind IT",
        "country": "US",
        "vat_id": None,
        "email": "ap@northwind-it.example",
        "address": {"lines": ["1 Northwind IT Street"], "city": "City", "postal_code": "D01 1234", "region": None, "country": "US"},
        "business": True,
        "registration": None,
    }
    assert detail["tax_breakdown"] == [{"tax_category": "O", "rate": "0", "taxable": "1516.25", "tax": "0.00", "note": NOTES[Scheme.OUTSIDE_SCOPE]}]

    [issued] = await read_events(
        kafka_bootstrap, INVOICES.name, until=lambda s: len(s) >= 1, match=lambda e: isinstance(e.data, InvoiceIssued) and e.tenant == tenant
    )
    data: InvoiceIssued = issued.data
    assert issued.id == derived_event_id("invoice_issued", summary["id"])
    assert issued.key == buyer
    assert (data.invoice_id, data.number, data.issued_on, data.due_on) == (summary["id"], "NW-000001", date(2026, 11, 2), date(2026, 12, 5))
    assert (str(data.net_total.amount), str(data.tax_total.amount), str(data.total.amount)) == ("1516.25", "0.00", "1516.25")
    assert data.total.currency == "USD"
    assert sum(line.net.amount for line in data.lines) == data.total.amount
    assert [(t.tax_category, str(t.taxable.amount)) for t in data.tax_breakdown] == [("O", "1516.25")]
    assert (data.seller.name, data.buyer.name, data.buyer.email) == ("Distributor Inc.", "Northwind IT", "ap@northwind-it.example")


async def test_period_closed_twice_issues_one_invoice(app: FastAPI, client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    buyer = account_id(tenant, "contoso")
    october = event(period_closed(tenant, buyer, [rated("l1", "USR-SUP", "2", "35.00")]), tenant)
    # Redelivered (same event id), then re-sent by a repeated bill run (new event id, same period).
    resent = event(october.data, tenant)
    september = event(period_closed(tenant, buyer, [rated("l1", "USR-SUP", "1", "35.00")], start=SEP_START, end=SEP_END), tenant)
    # Same buyer, so same partition: September is applied after all copies of October.
    await publish_events(kafka_bootstrap, october, october, resent, september)

    await wait_for_invoices(client, tenant, 2)
    by_period = {i["period_start"]: i for i in await invoices(client, tenant)}
    assert len(by_period) == 2
    prefix = default_prefix(tenant)
    assert (by_period["2026-10-01"]["number"], by_period["2026-10-01"]["total"]) == (f"{prefix}-000001", "70.00")
    assert by_period["2026-09-01"]["number"] == f"{prefix}-000002"
    issued = await raw_messages(kafka_bootstrap, INVOICES.name, lambda m: m.get("ce_tenant") == tenant, runtime=app.state.runtime)
    assert len(issued) == 2
    # The copies were recognised as already invoiced, not refused by the unique constraint (a
    # dead letter is on the broker before its batch commits, so it would be there by now).
    assert await raw_messages(kafka_bootstrap, DEAD_LETTER.name, lambda m: m.get("ce_tenant") == tenant) == []


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_twenty_buyers_get_numbers_one_to_twenty(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    buyers = [account_id(tenant, f"c-{i}") for i in range(20)]
    await publish_events(client, *(event(period_closed(tenant, b, [rated("l1", "EML-HST", "3", "6.75")]), tenant) for b in buyers))
    await wait_for_invoices(client, tenant, 20)

    # Walk the list in pages of 7 through the cursor.
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/invoices", headers=tenant_headers(tenant), params=params)).json()
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    prefix = default_prefix(tenant)
    assert [i["number"] for i in seen] == [f"{prefix}-{n:06d}" for n in range(20, 0, -1)]
    assert {i["buyer_account_id"] for i in seen} == set(buyers)
    # Never announced by CustomerUpserted: named by account id; default due rule is 30 days net.
    assert all(i["buyer_name"] == i["buyer_account_id"] and i["due_on"] == "2026-12-02" for i in seen)
    assert {i["total"] for i in seen} == {"20.25"}

    one = seen[0]
    assert [i["id"] for i in await invoices(client, tenant, buyer_account_id=one["buyer_account_id"])] == [one["id"]]
    assert len(await invoices(client, tenant, period="2026-10", status="open")) == 20
    assert await invoices(client, tenant, period="2026-09") == []
    assert await invoices(client, tenant, status="paid") == []


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_partial_then_full_payment(app: FastAPI, client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    buyer = account_id(tenant, "fabrikam")
    await publish_events(client, event(period_closed(tenant, buyer, [rated("l1", "SETUP-CORE", "4", "25.00", "EUR")], currency="EUR"), tenant))
    [invoice] = await wait_for_invoices(client, tenant, 1)
    assert invoice["total"] == "100.00"

    first = payment(tenant, invoice, "40.00", date(2026, 11, 20))
    await publish_events(client, event(first, tenant))
    [after_first] = await poll(lambda: invoices(client, tenant), lambda items: items[0]["amount_paid"] != "0.00")
    assert (after_first["status"], after_first["amount_paid"], after_first["open_amount"], after_first["paid_on"]) == (
        "open",
        "40.00",
        "60.00",
        None,
    )

    # The first payment again under another event id, then the rest, then a stray late duplicate.
    rest = payment(tenant, invoice, "60.00", date(2026, 12, 3))
    await publish_events(client, event(first, tenant), event(rest, tenant), event(rest, tenant))
    [paid] = await poll(lambda: invoices(client, tenant), lambda items: items[0]["status"] == "paid")
    assert (paid["amount_paid"], paid["open_amount"], paid["paid_on"]) == ("100.00", "0.00", "2026-12-03")

    settled = await raw_messages(
        kafka_bootstrap, INVOICES.name, lambda m: m.get("ce_type") == "billing.invoice.settled.v1" and m.get("ce_tenant") == tenant, runtime=app.state.runtime
    )
    assert len(settled) == 1
    assert json.loads(settled[0]["value"])["amount_paid"] == {"amount": "100.00", "currency": "EUR"}
    assert json.loads(settled[0]["value"])["settled_on"] == "2026-12-03"


async def test_poison_period_is_dead_lettered_and_the_next_one_applied(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    buyer = account_id(tenant, "contoso")
    poison = event(period_closed(tenant, buyer, [rated("l1", "X", "1", "10.00", "ZZZ")], currency="ZZZ"), tenant)
    good = event(period_closed(tenant, buyer, [rated("l1", "X", "1", "10.00")], start=NOV_START, end=NOV_END), tenant)
    await publish_events(kafka_bootstrap, poison, good)

    [invoice] = await wait_for_invoices(client, tenant, 1)
    assert (invoice["period_start"], invoice["number"]) == ("2026-11-01", f"{default_prefix(tenant)}-000001")
    dead = await raw_messages(kafka_bootstrap, DEAD_LETTER.name, lambda m: m.get("ce_id") == poison.id)
    assert len(dead) == 1
    assert dead[0]["dlq_service"] == "invoicing"
    assert "ZZZ" in dead[0]["dlq_error"]


async def test_payment_for_unknown_invoice_is_dead_lettered(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    buyer = account_id(tenant, "contoso")
    await publish_events(kafka_bootstrap, event(period_closed(tenant, buyer, [rated("l1", "X", "2", "10.00")]), tenant))
    [invoice] = await wait_for_invoices(client, tenant, 1)

    stray = event(payment(tenant, {**invoice, "id": str(uuid.uuid4())}, "5.00", date(2026, 11, 5)), tenant)
    good = event(payment(tenant, invoice, "20.00", date(2026, 11, 6)), tenant)
    await publish_events(kafka_bootstrap, stray, good)

    [paid] = await poll(lambda: invoices(client, tenant), lambda items: items[0]["status"] == "paid")
    assert (paid["amount_paid"], paid["paid_on"]) == ("20.00", "2026-11-06")
    dead = await raw_messages(kafka_bootstrap, DEAD_LETTER.name, lambda m: m.get("ce_id") == stray.id)
    assert len(dead) == 1 and "never issued" in dead[0]["dlq_error"]


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_invoice_of_another_seller_is_not_found(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    buyer = account_id(tenant, "contoso")
    await publish_events(client, event(period_closed(tenant, buyer, [rated("l1", "X", "1", "10.00")]), tenant))
    [invoice] = await wait_for_invoices(client, tenant, 1)

    assert (await client.get(f"/v1/invoices/{invoice['id']}", headers=tenant_headers(tenant))).status_code == 200
    for who, invoice_id in (("seller-other", invoice["id"]), (tenant, "no-such-invoice")):
        r = await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(who))
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "invoice_not_found"
    assert await invoices(client, "seller-other", buyer_account_id=buyer) == []


async def test_seller_settings(client: httpx.AsyncClient, tenant: str) -> None:
    r = await client.get("/v1/seller", headers=tenant_headers(tenant))
    assert r.status_code == 200
    assert r.json() == {
        "seller_id": tenant,
        "name": tenant,
        "country": None,
        "vat_id": None,
        "invoice_prefix": default_prefix(tenant),
        "due_rule": {"net_days": 30},
        "email": None,
        "address": None,
        "registration": None,
        "brand_color": None,
        "logo": None,
        "iban": None,
        "bic": None,
        "bank_account_name": None,
        "sepa_creditor_id": None,
        "configured": False,
    }
    saved = await put_seller(client, tenant, country="IE", vat_id="IE6388047V", due_rule={"net_days": 14})
    assert (saved["country"], saved["vat_id"], saved["due_rule"], saved["configured"]) == ("IE", "IE6388047V", {"net_days": 14}, True)
    assert (await client.get("/v1/seller", headers=tenant_headers(tenant))).json() == saved
    assert await put_seller(client, tenant, country="IE", vat_id="IE6388047V", due_rule={"net_days": 14}) == saved

    invalid: list[dict[str, Any]] = [
        {"country": "XX"},
        {"country": "ie"},
        {"invoice_prefix": "nw"},
        {"invoice_prefix": "ABCDEFGHIJK"},
        {"due_rule": {"net_days": 30, "day_of_next_month": 5}},
        {"due_rule": {"day_of_next_month": 0}},
        {"due_rule": {}},
        {"email": "not-an-email"},
        {"brand_color": "red"},
        {"address": {"lines": ["1 Main St"], "country": "ie"}},
    ]
    for bad in invalid:
        body = {"name": "N", "country": "IE", "vat_id": None, "invoice_prefix": "NW", "due_rule": {"net_days": 30}, "email": None, **bad}
        r = await client.put("/v1/seller", headers=tenant_headers(tenant), json=body)
        assert r.status_code == 422, bad
        assert r.json()["code"] == "validation_error"
    assert (await client.get("/v1/seller", headers=tenant_headers(tenant))).json() == saved


async def test_list_rejects_bad_filters(client: httpx.AsyncClient, tenant: str) -> None:
    for params, status, code in (
        ({"period": "2026-13"}, 400, "invalid_period"),
        ({"period": "October"}, 422, "validation_error"),
        ({"status": "overdue"}, 422, "validation_error"),
        ({"cursor": "abc"}, 400, "invalid_cursor"),
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 201}, 422, "limit_too_large"),
    ):
        r = await client.get("/v1/invoices", headers=tenant_headers(tenant), params=params)
        assert (r.status_code, r.json()["code"]) == (status, code), params
    # Above the maximum is refused, never silently clamped; the answer names the maximum.
    too_many = (await client.get("/v1/invoices", headers=tenant_headers(tenant), params={"limit": 500})).json()
    assert "at most 200" in too_many["title"] and too_many.get("field") == "limit", too_many
    r = await client.get("/v1/invoices")
    assert r.status_code == 401
