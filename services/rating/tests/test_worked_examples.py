"""BILLING-RULES worked examples A, C and D to the cent, driven over HTTP: catalogue and prices
into rating, customers, orders, counts and usage into usage-ingest (as partners post them), read
back from rating's charges API and from the PeriodClosed events of its bill runs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from billing_events import BillRunClosed, CloudEvent, account_id, subscription_id
from billing_events.topics import CATALOGUE, PERIODS
from billing_runtime.testing import eventually, read_events
from billing_runtime.testing import tenant_headers as h
from rating.billrun.scheduler import run_due
from rating.billrun.service import bill_run_id
from rating.period import Period

from .conftest import ordered

T = TypeVar("T")
CENT = Decimal("0.01")


async def ok(response: Awaitable[httpx.Response]) -> dict[str, Any]:
    r = await response
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    if "rejected" in body:
        assert body["rejected"] == 0 and body["conflict"] == 0, body
    return body


async def product(client: httpx.AsyncClient, seller: str, code: str, name: str, rule: str, **extra: Any) -> None:
    await ok(client.put(f"/v1/products/{code}", headers=h(seller), json={"name": name, "quantity_rule": rule, **extra}))


async def price(client: httpx.AsyncClient, seller: str, code: str, model: dict[str, Any], currency: str | None = "USD") -> None:
    body = {"effective_from": "2026-01-01", "currency": currency, "price": model}
    await ok(client.put(f"/v1/price-list/{code}", headers=h(seller), json=body))


def per_unit(amount: str) -> dict[str, Any]:
    return {"model": "per_unit", "unit_price": amount}


async def customers(ingest: httpx.AsyncClient, tenant: str, *rows: tuple[str, str]) -> None:
    records = [{"id": cid, "name": name, "billing_email": f"ap@{cid}.example", "country": "US", "currency": "USD"} for cid, name in rows]
    await ok(ingest.post("/v1/customers", headers=h(tenant), json={"records": records}))


async def charges(client: httpx.AsyncClient, seller: str, account: str, period: str) -> dict[str, Any]:
    r = await client.get(f"/v1/accounts/{account}/charges?period={period}", headers=h(seller))
    return r.json() if r.status_code == 200 else {}


def total(charge: dict[str, Any]) -> Decimal:
    return Decimal(charge["total"]["amount"]) if charge else Decimal(-1)


async def closed_events(bootstrap: str, seller: str, count: int) -> list[CloudEvent[Any]]:
    return await read_events(bootstrap, PERIODS.name, until=lambda s: len(s) >= count, match=lambda e: e.tenant == seller, timeout=30)


async def orders_received(ingest: httpx.AsyncClient, tenant: str, received: str, *records: dict[str, Any]) -> None:
    """Orders usage-ingest receives at `received` (its clock), posted until it knows their products."""
    ingest.app_clock.set(datetime.fromisoformat(received))  # type: ignore[attr-defined]  # the clock conftest hangs on the client
    await ordered(ingest, headers=h(tenant), json={"records": list(records)})


async def close_months(client: httpx.AsyncClient, bootstrap: str, seller: str, months: tuple[str, ...], closed: int) -> list[CloudEvent[Any]]:
    """The seller's bill runs of `months`, in order, and the `closed` PeriodClosed they emit, by period."""
    for month in months:
        await ok(client.post("/v1/bill-runs", headers=h(seller), json={"period": month}))
    return sorted(await closed_events(bootstrap, seller, closed), key=lambda e: e.data.period_start)


def sums(lines: list[Any]) -> dict[tuple[str | None, str, str], Decimal]:
    out: dict[tuple[str | None, str, str], Decimal] = {}
    for line in lines:
        key = (line.end_customer_id, line.product_code, line.kind)
        out[key] = out.get(key, Decimal(0)) + line.amount.amount
    return out


async def test_example_a_distributor_bills_partner_to_the_cent_and_the_partner_bills_retail(
    client: httpx.AsyncClient, ingest: httpx.AsyncClient, app: FastAPI, distributor: str, kafka_bootstrap: str
) -> None:
    nw = f"nw-{uuid.uuid4().hex[:8]}"
    d = distributor
    await ok(client.put("/v1/seller", headers=h(d), json={"currency": "USD", "country": "US", "time_zone": "America/Chicago", "scheduled": False}))
    await ok(client.put("/v1/seller", headers=h(nw), json={"currency": "USD", "country": "US", "time_zone": "America/Chicago"}))
    rmm = "Remote Monitoring and Management"
    await product(
        client, d, "USR-SUP", "User support", "latest", category=rmm, unit="user", policy={"first_period": "next_period", "setup_product": "SETUP-CORE"}
    )
    await product(client, d, "SRV-SUP", "Server support", "snapshot", snapshot_day=23, category=rmm, unit="server")
    await product(client, d, "WKS-SUP", "Workstation support", "snapshot", snapshot_day=23, category=rmm, unit="device")
    await product(client, d, "EML-HST", "Hosted email", "distinct_active", category="Communications", unit="mailbox")
    await product(client, d, "SETUP-CORE", "Core setup", "contracted", kind="one_time", category="Co-Managed Services", unit="user")
    await product(client, d, "STL-LIC", "StreamlineIT PSA licence", "contracted", category="Software as a Service")
    await product(client, d, "ITG-LIC", "IT Glue documentation licence", "contracted", category="Software as a Service")
    await product(client, d, "SHIP-GND", "Ground shipping", "usage_sum", kind="shipping", category="Miscellaneous")
    for code, amount in (
        ("USR-SUP", "35.00"),
        ("SRV-SUP", "85.00"),
        ("WKS-SUP", "12.50"),
        ("EML-HST", "6.75"),
        ("SETUP-CORE", "25.00"),
        ("STL-LIC", "47.25"),
        ("ITG-LIC", "30.00"),
        ("SHIP-GND", "52.50"),
    ):
        await price(client, d, code, per_unit(amount))
    # Northwind's retail prices: 20% over wholesale, a price of its own for hosted email.
    await ok(client.put("/v1/markup-rule", headers=h(nw), json={"effective_from": "2026-01-01", "markup_percent": "20"}))
    await price(client, nw, "EML-HST", per_unit("8.00"))

    # The partner is the distributor's customer, under its tenant id; its customers are its own.
    await customers(ingest, d, (nw, "Northwind IT"))
    await customers(ingest, nw, ("contoso", "Contoso Dental"), ("fabrikam", "Fabrikam Law"))
    await orders_received(
        ingest,
        d,
        "2026-09-01T09:00:00-05:00",
        {"id": "nw-stl", "customer_id": nw, "product_code": "STL-LIC", "quantity": "2", "start_date": "2026-09-01"},
        {"id": "nw-itg", "customer_id": nw, "product_code": "ITG-LIC", "quantity": "3", "start_date": "2026-09-01"},
    )
    await ok(
        ingest.post(
            "/v1/usage",
            headers=h(d),
            json={
                "records": [
                    {"id": "ship-1", "customer_id": nw, "product_code": "SHIP-GND", "quantity": "1", "timestamp": "2026-10-08T14:00:00-05:00"},
                ]
            },
        )
    )
    await orders_received(
        ingest,
        nw,
        "2026-10-14T10:00:00-05:00",
        {"id": "fab-users", "customer_id": "fabrikam", "product_code": "USR-SUP", "quantity": "8", "start_date": "2026-10-14"},
    )

    def count(oid: str, code: str, when: str, quantity: str) -> dict[str, Any]:
        return {"id": oid, "customer_id": "contoso", "product_code": code, "observed_at": when, "source": "rmm", "quantity": quantity}

    def mailboxes(oid: str, when: str, **states: str) -> dict[str, Any]:
        items = [{"item_id": k, "state": v} for k, v in states.items()]
        return {"id": oid, "customer_id": "contoso", "product_code": "EML-HST", "observed_at": when, "source": "vendor", "items": items}

    await ok(
        ingest.post(
            "/v1/quantities",
            headers=h(nw),
            json={
                "records": [
                    count("u1", "USR-SUP", "2026-10-01T08:00:00-05:00", "14"),
                    count("u2", "USR-SUP", "2026-10-15T08:00:00-05:00", "16"),
                    count("u3", "USR-SUP", "2026-10-30T08:00:00-05:00", "15"),
                    count("s1", "SRV-SUP", "2026-10-05T08:00:00-05:00", "2"),
                    count("s2", "SRV-SUP", "2026-10-23T08:00:00-05:00", "3"),
                    count("s3", "SRV-SUP", "2026-10-27T08:00:00-05:00", "2"),
                    count("w1", "WKS-SUP", "2026-09-23T08:00:00-05:00", "18"),
                    count("w2", "WKS-SUP", "2026-10-25T08:00:00-05:00", "20"),
                    mailboxes("m-oct1", "2026-10-01T00:00:00-05:00", **{f"m{i}": "active" for i in range(1, 11)}),
                    mailboxes("m-oct12", "2026-10-12T09:00:00-05:00", m11="active"),
                    mailboxes("m-oct20", "2026-10-20T09:00:00-05:00", m3="deleted"),
                ]
            },
        )
    )

    partner = account_id(d, nw)
    live = await eventually(
        lambda: _when(charges(client, d, partner, "2026-10"), lambda c: total(c) == Decimal("1516.25")), "the distributor's view of October"
    )
    assert live["bill_run_id"] is None and live["currency"] == "USD"

    run = await ok(client.post("/v1/bill-runs", headers=h(d), json={"period": "2026-10"}))
    assert (run["tier"], run["created"], run["buyers"], run["period_start"], run["period_end"]) == ("wholesale", True, 1, "2026-10-01", "2026-10-31")
    again = await client.post("/v1/bill-runs", headers=h(d), json={"period": "2026-10"})
    assert again.status_code == 200 and again.json()["created"] is False

    (event,) = await closed_events(kafka_bootstrap, d, 1)
    closed = event.data
    assert (closed.tier, closed.seller_id, closed.buyer_account_id, closed.currency) == ("wholesale", d, partner, "USD")
    contoso, fabrikam = account_id(nw, "contoso"), account_id(nw, "fabrikam")
    assert sums(closed.lines) == {
        (contoso, "USR-SUP", "recurring"): Decimal("525.00"),
        (contoso, "SRV-SUP", "recurring"): Decimal("255.00"),
        (contoso, "WKS-SUP", "recurring"): Decimal("225.00"),
        (contoso, "EML-HST", "recurring"): Decimal("74.25"),
        (fabrikam, "SETUP-CORE", "one_time"): Decimal("200.00"),
        (None, "STL-LIC", "recurring"): Decimal("94.50"),
        (None, "ITG-LIC", "recurring"): Decimal("90.00"),
        (None, "SHIP-GND", "shipping"): Decimal("52.50"),
    }
    section = sum((line.amount.amount for line in closed.lines if line.end_customer_id == contoso), Decimal(0))
    assert section == Decimal("1079.25")
    assert sum((line.amount.amount.quantize(CENT) for line in closed.lines), Decimal(0)) == Decimal("1516.25")
    by_code = {line.product_code: line for line in closed.lines}
    assert {line.end_customer_name for line in closed.lines if line.end_customer_id} == {"Contoso Dental", "Fabrikam Law"}
    assert (by_code["SRV-SUP"].quantity_rule, by_code["EML-HST"].quantity, by_code["EML-HST"].unit) == ("snapshot(day=23)", Decimal("11"), "mailbox")
    assert by_code["SETUP-CORE"].category == "Co-Managed Services" and by_code["SHIP-GND"].category == "Miscellaneous"

    # November, live: m3 has dropped off; Fabrikam's 8 users bill in full.
    november = await charges(client, d, partner, "2026-11")
    nov = {(line["end_customer_id"], line["product_code"]): Decimal(line["amount"]["amount"]) for line in november["lines"]}
    assert nov[(contoso, "EML-HST")] == Decimal("67.50") and nov[(fabrikam, "USR-SUP")] == Decimal("280.00")

    # The partner's own run bills its customers at retail, one PeriodClosed each.
    retail = await ok(client.post("/v1/bill-runs", headers=h(nw), json={"period": "2026-10"}))
    assert (retail["tier"], retail["buyers"]) == ("retail", 2)
    events = {e.data.buyer_account_id: e.data for e in await closed_events(kafka_bootstrap, nw, 2)}
    assert {k: sum((line.amount.amount for line in v.lines), Decimal(0)).quantize(CENT) for k, v in events.items()} == {
        contoso: Decimal("1294.00"),  # (525 + 255 + 225) × 1.2 + 11 × 8.00
        fabrikam: Decimal("240.00"),
    }
    assert all(e.tier == "retail" and all(line.end_customer_id is None for line in e.lines) for e in events.values())

    margins = (await client.get("/v1/margins?period=2026-10", headers=h(nw))).json()["lines"]
    by = {(m["end_customer_id"], m["product_code"]): Decimal(m["margin"]) for m in margins}
    assert by[(contoso, "USR-SUP")] == Decimal("105.00") and by[(contoso, "EML-HST")] == Decimal("13.75")
    assert by[(fabrikam, "SETUP-CORE")] == Decimal("40.00")


async def _when(probe: Awaitable[dict[str, Any]], good: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    found = await probe
    return found if good(found) else None


async def test_example_c_cost_plus_pass_through_closed_by_the_scheduler_on_the_issue_day(
    client: httpx.AsyncClient, ingest: httpx.AsyncClient, app: FastAPI, distributor: str, kafka_bootstrap: str
) -> None:
    partner = f"p-{uuid.uuid4().hex[:8]}"
    await ok(client.put("/v1/seller", headers=h(partner), json={"currency": "USD", "country": "US", "scheduled": True}))
    await product(client, distributor, "AZURE", "Azure consumption", "usage_sum", category="Communications")
    await price(client, distributor, "AZURE", {"model": "cost_plus", "markup_percent": "5"})
    await price(client, partner, "AZURE", {"model": "cost_plus", "markup_percent": "15"})
    await customers(ingest, distributor, (partner, "Partner Ltd"))
    await customers(ingest, partner, ("acme", "Acme Corp"))
    records = [
        {
            "id": f"az-{i}",
            "customer_id": "acme",
            "product_code": "AZURE",
            "quantity": "1",
            "timestamp": f"2026-10-{day}T12:00:00Z",
            "cost": {"amount": cost, "currency": "USD"},
        }
        for i, (day, cost) in enumerate((("03", "1234.56"), ("14", "789.01"), ("31", "0.43")))
    ]
    await ok(ingest.post("/v1/usage", headers=h(partner), json={"records": records}))
    acme = account_id(partner, "acme")
    live = await eventually(lambda: _when(charges(client, partner, acme, "2026-10"), lambda c: total(c) == Decimal("2327.60")), "the Azure usage")
    assert [(line["quantity"], line["unit_price"]["amount"], line["amount"]["amount"]) for line in live["lines"]] == [("2024.00", "1.15", "2327.6000")]

    runtime = app.state.runtime
    # The issue day is the first business day after October: Sunday 1 November is not one.
    assert await run_due(runtime, distributor, datetime.fromisoformat("2026-11-01T12:00:00+00:00")) == []
    created = await run_due(runtime, distributor, datetime.fromisoformat("2026-11-02T08:00:00+00:00"))
    assert len(created) >= 1
    assert REGISTRY.get_sample_value("billing_bill_runs_overdue") == 0  # every due seller has its run
    (event,) = await closed_events(kafka_bootstrap, partner, 1)
    assert event.data.bill_run_id in created
    assert sum((line.amount.amount for line in event.data.lines), Decimal(0)).quantize(CENT) == Decimal("2327.60")
    assert event.data.bill_run_id not in await run_due(runtime, distributor, datetime.fromisoformat("2026-11-03T08:00:00+00:00"))

    # The margin against the distributor's cost-plus 5%: 2,024.00 × (1.15 − 1.05).
    async def margin_lines() -> list[dict[str, Any]] | None:
        lines: list[dict[str, Any]] = (await client.get("/v1/margins?period=2026-10", headers=h(partner))).json()["lines"]
        return lines if lines and lines[0]["wholesale"] != "0" else None

    (margin,) = await eventually(margin_lines, "the partner's wholesale account")
    assert (margin["end_customer_name"], margin["retail"], margin["wholesale"], margin["margin"]) == ("Acme Corp", "2327.6000", "2125.2000", "202.4000")


async def test_example_d_true_up_over_three_bill_runs(client: httpx.AsyncClient, ingest: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    partner = f"p-{uuid.uuid4().hex[:8]}"
    await product(
        client, partner, "USR-SUP", "User support", "contracted", unit_price="35.00", currency="USD", policy={"first_period": "next_period", "true_up": True}
    )
    await customers(ingest, partner, ("globex", "Globex"))
    await orders_received(
        ingest,
        partner,
        "2026-07-06T10:00:00+00:00",
        {"id": "gx-users", "customer_id": "globex", "product_code": "USR-SUP", "quantity": "10", "start_date": "2026-07-06"},
    )
    await ok(
        ingest.post(
            "/v1/quantities",
            headers=h(partner),
            json={
                "records": [
                    {
                        "id": "dir-oct",
                        "customer_id": "globex",
                        "product_code": "USR-SUP",
                        "observed_at": "2026-10-29T18:00:00Z",
                        "source": "directory",
                        "quantity": "12",
                    },
                ]
            },
        )
    )
    globex = account_id(partner, "globex")
    await eventually(lambda: _when(charges(client, partner, globex, "2026-10"), lambda c: total(c) == Decimal("560.00")), "the order and count")
    sub = (await client.get(f"/v1/subscriptions/{subscription_id(partner, 'gx-users')}", headers=h(partner))).json()
    assert (sub["billing_starts_on"], sub["policy"]["true_up"]) == ("2026-08-01", True)

    events = await close_months(client, kafka_bootstrap, partner, ("2026-07", "2026-08", "2026-09", "2026-10"), 3)
    assert [(e.data.period_start, sum((line.amount.amount for line in e.data.lines), Decimal(0))) for e in events] == [
        (date(2026, 8, 1), Decimal("350.00")),
        (date(2026, 9, 1), Decimal("350.00")),
        (date(2026, 10, 1), Decimal("560.00")),
    ]
    october = {line.kind: (line.quantity, line.unit_price.amount, line.amount.amount) for line in events[-1].data.lines}
    assert october == {"recurring": (Decimal("12"), Decimal("35.00"), Decimal("420.00")), "true_up": (Decimal("4"), Decimal("35.00"), Decimal("140.00"))}


async def test_example_b_advance_billing_with_a_daily_prorated_addition(client: httpx.AsyncClient, ingest: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    partner = f"cloudy-{uuid.uuid4().hex[:8]}"
    await ok(client.put("/v1/seller", headers=h(partner), json={"currency": "EUR", "country": "IE", "time_zone": "Europe/Dublin"}))
    await product(
        client,
        partner,
        "M365-BP",
        "Microsoft 365 Business Premium",
        "contracted",
        category="Communications",
        policy={"timing": "advance", "proration": "daily"},
    )
    await price(client, partner, "M365-BP", per_unit("20.60"), currency="EUR")
    records = [{"id": "acme", "name": "Acme GmbH", "billing_email": "ap@acme.example", "country": "DE", "currency": "EUR", "vat_id": "DE136695976"}]
    await ok(ingest.post("/v1/customers", headers=h(partner), json={"records": records}))
    await orders_received(
        ingest,
        partner,
        "2026-09-25T10:00:00+01:00",
        {"id": "acme-m365", "customer_id": "acme", "product_code": "M365-BP", "quantity": "10", "start_date": "2026-10-01"},
    )
    ingest.app_clock.set(datetime.fromisoformat("2026-10-17T09:00:00+01:00"))  # type: ignore[attr-defined]  # the clock conftest hangs on the client
    await ok(ingest.post("/v1/orders/acme-m365/changes", headers=h(partner), json={"id": "acme-m365-plus4", "quantity": "14", "effective_date": "2026-10-17"}))
    acme = account_id(partner, "acme")
    await eventually(lambda: _when(charges(client, partner, acme, "2026-10"), lambda c: total(c).quantize(CENT) == Decimal("328.27")), "the addition")

    events = await close_months(client, kafka_bootstrap, partner, ("2026-09", "2026-10"), 2)
    september, october = (e.data for e in events)
    assert [(line.service_period_start, line.amount.amount, line.timing) for line in september.lines] == [(date(2026, 10, 1), Decimal("206.00"), "advance")]
    assert [(line.service_period_start, line.service_period_end, line.quantity, line.amount.amount.quantize(CENT)) for line in october.lines] == [
        (date(2026, 10, 17), date(2026, 10, 31), Decimal("4"), Decimal("39.87")),  # 4 × 20.60 × 15/31
        (date(2026, 11, 1), date(2026, 11, 30), Decimal("14"), Decimal("288.40")),
    ]


async def test_the_wholesale_charges_are_announced_on_the_first_business_day_ahead_of_a_later_bill_run(
    client: httpx.AsyncClient, ingest: httpx.AsyncClient, app: FastAPI, distributor: str, kafka_bootstrap: str
) -> None:
    """Seed 001: the comparison report goes out on the first business day after the period, the
    invoice a week or two later. The distributor's run is due on the 10th (`issue_day`): rating
    announces the partner's October on Monday 2 November (not on Sunday the 1st), once, and the
    PeriodClosed of the 10th follows it on the partner's partition."""
    d, nw = distributor, f"nw-{uuid.uuid4().hex[:8]}"
    await ok(client.put("/v1/seller", headers=h(d), json={"currency": "USD", "country": "US", "issue_day": 10, "scheduled": True}))
    await product(client, d, "STL-LIC", "StreamlineIT PSA licence", "contracted", category="Software as a Service")
    await price(client, d, "STL-LIC", per_unit("47.25"))
    await customers(ingest, d, (nw, "Northwind IT"))
    await orders_received(
        ingest, d, "2026-09-01T09:00:00+00:00", {"id": "nw-stl", "customer_id": nw, "product_code": "STL-LIC", "quantity": "2", "start_date": "2026-09-01"}
    )
    partner = account_id(d, nw)
    await eventually(lambda: _when(charges(client, d, partner, "2026-10"), lambda c: total(c) == Decimal("94.50")), "the partner's October")

    runtime = app.state.runtime
    october = bill_run_id(d, Period.parse("2026-10", UTC))
    announced = REGISTRY.get_sample_value("billing_charges_announced_total", {"tier": "wholesale"}) or 0.0
    for day in ("2026-10-31T12:00:00+00:00", "2026-11-01T12:00:00+00:00"):  # Saturday: October not over; Sunday: no business day
        runtime.clock.set(datetime.fromisoformat(day))
        assert october not in await run_due(runtime, d)  # (other tests' scheduled sellers may be due)
    assert REGISTRY.get_sample_value("billing_charges_announced_total", {"tier": "wholesale"}) == announced
    runtime.clock.set(datetime.fromisoformat("2026-11-02T08:00:00+00:00"))
    assert october not in await run_due(runtime, d)  # announced; the run is due on the 10th
    assert REGISTRY.get_sample_value("billing_charges_announced_total", {"tier": "wholesale"}) == announced + 1
    runtime.clock.set(datetime.fromisoformat("2026-11-03T08:00:00+00:00"))
    assert october not in await run_due(runtime, d)
    assert REGISTRY.get_sample_value("billing_charges_announced_total", {"tier": "wholesale"}) == announced + 1  # once
    runtime.clock.set(datetime.fromisoformat("2026-11-10T08:00:00+00:00"))
    assert october in await run_due(runtime, d)

    # (Saturday's pass closed September, due since 10 October, for this new seller: its own event.)
    seen = [e for e in await closed_events(kafka_bootstrap, d, 3) if e.data.period_start == date(2026, 10, 1)]
    rated, closed = seen
    assert (rated.type, closed.type) == ("billing.charges.rated.v1", "billing.period.closed.v1")  # the announcement first
    assert (rated.data.account_id, rated.data.tier, rated.data.rated_on, rated.data.bill_run_on) == (
        partner,
        "wholesale",
        date(2026, 11, 2),
        date(2026, 11, 10),
    )
    assert [(line.line_id, line.amount) for line in rated.data.lines] == [(line.line_id, line.amount) for line in closed.data.lines]


async def test_example_b_imported_as_history_rates_with_its_real_dates(client: httpx.AsyncClient, ingest: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    """The same business as example B, posted in one batch weeks later through the historic import
    (`POST /v1/admin/order-history`) as a partner migrating from another system would: rating takes
    the request dates, so the runs bill exactly what example B bills (the addition prorated 15/31)."""
    partner = f"cloudy-{uuid.uuid4().hex[:8]}"
    await ok(client.put("/v1/seller", headers=h(partner), json={"currency": "EUR", "country": "IE", "time_zone": "Europe/Dublin"}))
    policy = {"timing": "advance", "proration": "daily"}
    await product(client, partner, "M365-BP", "Microsoft 365 Business Premium", "contracted", category="Communications", policy=policy)
    # A year before the other examples: their distributor's runs close 2026's months for every partner in usage-ingest.
    body = {"effective_from": "2025-01-01", "currency": "EUR", "price": per_unit("20.60")}
    await ok(client.put("/v1/price-list/M365-BP", headers=h(partner), json=body))
    records = [{"id": "acme", "name": "Acme GmbH", "billing_email": "ap@acme.example", "country": "DE", "currency": "EUR", "vat_id": "DE136695976"}]
    await ok(ingest.post("/v1/customers", headers=h(partner), json={"records": records}))
    ingest.app_clock.set(datetime.fromisoformat("2026-11-20T10:00:00+00:00"))  # type: ignore[attr-defined]
    history = [
        {
            "kind": "order",
            "id": "acme-m365",
            "customer_id": "acme",
            "product_code": "M365-BP",
            "quantity": "10",
            "start_date": "2025-10-01",
            "requested_at": "2025-09-25T10:00:00+01:00",
        },
        {
            "kind": "change",
            "id": "acme-m365-plus4",
            "order_id": "acme-m365",
            "quantity": "14",
            "effective_date": "2025-10-17",
            "requested_at": "2025-10-17T09:00:00+01:00",
        },
    ]

    async def imported() -> dict[str, Any] | None:
        r = await ingest.post("/v1/admin/order-history", headers=h(partner), json={"records": history})
        if r.status_code == 422 and any(e["code"] == "unknown_product" for e in r.json().get("errors", [])):
            return None  # the product has not reached usage-ingest yet
        assert r.status_code == 200, r.text
        return r.json()

    assert (await eventually(imported, "usage-ingest to know the product", interval=0.1))["accepted"] == 2
    acme = account_id(partner, "acme")
    await eventually(lambda: _when(charges(client, partner, acme, "2025-10"), lambda c: total(c).quantize(CENT) == Decimal("328.27")), "the addition")
    events = await close_months(client, kafka_bootstrap, partner, ("2025-09", "2025-10"), 2)
    september, october = (e.data for e in events)
    assert [(line.service_period_start, line.amount.amount, line.late) for line in september.lines] == [(date(2025, 10, 1), Decimal("206.00"), False)]
    assert [(line.service_period_start, line.service_period_end, line.quantity, line.amount.amount.quantize(CENT), line.late) for line in october.lines] == [
        (date(2025, 10, 17), date(2025, 10, 31), Decimal("4"), Decimal("39.87"), False),  # 4 × 20.60 × 15/31, from the change's real date
        (date(2025, 11, 1), date(2025, 11, 30), Decimal("14"), Decimal("288.40"), False),
    ]
    # Each run also tells usage-ingest its period is closed (BillRunClosed on the catalogue topic).
    runs = await read_events(
        kafka_bootstrap, CATALOGUE.name, until=lambda s: len(s) >= 2, match=lambda e: e.tenant == partner and e.type == BillRunClosed.event_type
    )
    assert sorted((e.data.period_start, e.data.period_end, e.data.tier) for e in runs) == [
        (date(2025, 9, 1), date(2025, 9, 30), "retail"),
        (date(2025, 10, 1), date(2025, 10, 31), "retail"),
    ]


async def test_live_charges_and_the_announcement_bill_an_annual_advance_term_as_the_bill_run_does(
    client: httpx.AsyncClient, ingest: httpx.AsyncClient, app: FastAPI, distributor: str, kafka_bootstrap: str
) -> None:
    """A licence billed annually in advance (BILLING-RULES §1: yearly terms, advance timing) is
    billed by the run closing the month before its year starts: a year from 1 November 2026 by
    October's runs. October's live spend (the charges API), its announcement (ChargesRated) and its
    bill runs (PeriodClosed) bill it alike, to the cent: the partner's own licence and its
    customer's at wholesale on the partner's invoice, the customer's at retail on the partner's run."""
    d, nw = distributor, f"nw-{uuid.uuid4().hex[:8]}"
    await ok(client.put("/v1/seller", headers=h(d), json={"currency": "USD", "country": "US", "issue_day": 10, "scheduled": True}))
    await ok(client.put("/v1/seller", headers=h(nw), json={"currency": "USD", "country": "US"}))
    await product(client, d, "STL-LIC", "StreamlineIT PSA licence", "contracted", category="Software as a Service")
    await product(client, d, "FW-YEAR", "Firewall licence", "contracted", category="Security", unit="device", policy={"interval": "year", "timing": "advance"})
    await price(client, d, "STL-LIC", per_unit("47.25"))
    await price(client, d, "FW-YEAR", per_unit("1200.00"))
    await ok(client.put("/v1/markup-rule", headers=h(nw), json={"effective_from": "2026-01-01", "markup_percent": "20"}))
    await customers(ingest, d, (nw, "Northwind IT"))
    await customers(ingest, nw, ("contoso", "Contoso Dental"))
    received = "2026-09-01T09:00:00+00:00"
    own = [
        {"id": "nw-stl", "customer_id": nw, "product_code": "STL-LIC", "quantity": "2", "start_date": "2026-09-01"},
        {"id": "nw-fw", "customer_id": nw, "product_code": "FW-YEAR", "quantity": "3", "start_date": "2026-11-01"},
    ]
    await orders_received(ingest, d, received, *own)
    contoso_fw = {"id": "co-fw", "customer_id": "contoso", "product_code": "FW-YEAR", "quantity": "1", "start_date": "2026-11-01"}
    await orders_received(ingest, nw, received, contoso_fw)
    partner, contoso = account_id(d, nw), account_id(nw, "contoso")
    year, october_ = (date(2026, 11, 1), date(2027, 10, 31)), (date(2026, 10, 1), date(2026, 10, 31))
    wholesale = {(None, "STL-LIC", *october_): Decimal("94.50"), (None, "FW-YEAR", *year): Decimal("3600.00"), (contoso, "FW-YEAR", *year): Decimal("1200.00")}
    retail = {(None, "FW-YEAR", *year): Decimal("1440.00")}

    def billed(lines: list[Any]) -> dict[tuple[str | None, str, date, date], Decimal]:
        out: dict[tuple[str | None, str, date, date], Decimal] = {}
        for line in lines:
            start, end = date.fromisoformat(line["service_period_start"]), date.fromisoformat(line["service_period_end"])
            key = (line["end_customer_id"], line["product_code"], start, end)
            out[key] = out.get(key, Decimal(0)) + Decimal(line["amount"]["amount"])
        return out

    def as_json(lines: list[Any]) -> list[dict[str, Any]]:
        return [line.model_dump(mode="json") for line in lines]

    live = await eventually(lambda: _when(charges(client, d, partner, "2026-10"), lambda c: total(c) == Decimal("4894.50")), "the partner's October")
    assert billed(live["lines"]) == wholesale
    live_retail = await eventually(lambda: _when(charges(client, nw, contoso, "2026-10"), lambda c: total(c) == Decimal("1440.00")), "Contoso's October")
    assert billed(live_retail["lines"]) == retail

    runtime = app.state.runtime
    october = bill_run_id(d, Period.parse("2026-10", UTC))
    runtime.clock.set(datetime.fromisoformat("2026-11-02T08:00:00+00:00"))
    assert october not in await run_due(runtime, d)  # announced; the run is due on the 10th
    runtime.clock.set(datetime.fromisoformat("2026-11-10T08:00:00+00:00"))
    assert october in await run_due(runtime, d)
    rated, closed = await closed_events(kafka_bootstrap, d, 2)  # (no earlier run: September was never closed)
    assert (rated.type, closed.type) == ("billing.charges.rated.v1", "billing.period.closed.v1")
    assert rated.data.period_start == closed.data.period_start == date(2026, 10, 1)
    assert billed(as_json(rated.data.lines)) == billed(as_json(closed.data.lines)) == wholesale
    assert [(line.line_id, line.amount) for line in rated.data.lines] == [(line.line_id, line.amount) for line in closed.data.lines]
    assert [(line["line_id"], line["amount"]) for line in live["lines"]] == [(line["line_id"], line["amount"]) for line in as_json(closed.data.lines)]

    await ok(client.post("/v1/bill-runs", headers=h(nw), json={"period": "2026-10"}))
    (retail_closed,) = await closed_events(kafka_bootstrap, nw, 1)
    assert billed(as_json(retail_closed.data.lines)) == billed(live_retail["lines"]) == retail
