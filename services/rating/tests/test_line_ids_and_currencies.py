"""A close writes every distinct charge (line ids never collide), and a seller billing buyers in
several currencies: a price list per currency, and a buyer whose currency has no price reported.

The projections are written with SQL, as the consumers would have left them (see
test_close_at_scale); the close runs against the real PostgreSQL and writes to the outbox."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from billing_events import account_id, derived_event_id
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import tenant_headers as h
from rating.billrun.service import bill_run_id, close_period
from rating.period import Period

from .conftest import TODAY

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def period_closed(runtime: ServiceRuntime, seller: str, account: str) -> dict[str, Any] | None:
    event_id = derived_event_id("period_closed", bill_run_id(seller, Period.parse("2026-10")), account)
    async with runtime.sessions() as session:
        value = (await session.execute(text("SELECT value FROM rating.outbox WHERE event_id = :e"), {"e": event_id})).scalar()
    return json.loads(value) if value is not None else None  # the value is the event's data


async def charges(runtime: ServiceRuntime, seller: str) -> list[tuple[str, str, str, Decimal, str]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT account_id, line_id, service_period_end::text, amount, currency FROM rating.rated_charge"
                " WHERE seller_id = :s ORDER BY account_id, service_period_end"
            ),
            {"s": seller},
        )
        return [tuple(r) for r in rows]


async def test_two_daily_subscriptions_starting_the_same_day_are_both_written_and_emitted(runtime: ServiceRuntime, tenant: str, distributor: str) -> None:
    """Both start on 1 October; one is cancelled from 16 October. Before the fix both lines had one
    id: the insert kept one charge and PeriodClosed carried two lines with the same id."""
    p = {"s": tenant, "at": TODAY}
    async with runtime.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO rating.product (seller_id, code, name, unit_price, currency, quantity_rule, kind, policy, updated_at)"
                " VALUES (:s, 'EML-HST', 'Hosted email', 6.75, 'USD', 'contracted', 'recurring', '{\"proration\": \"daily\"}', :at)"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.buyer_account (seller_id, account_id, external_id, name, currency, revision)"
                " VALUES (:s, 'acct-1', 'c-1', 'Contoso', 'USD', 1)"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.subscription (seller_id, subscription_id, order_id, account_id, product_code, quantity,"
                " start_on, ordered_at, setup_exempt) VALUES"
                " (:s, 'sub-1', 'o-1', 'acct-1', 'EML-HST', 4, DATE '2026-10-01', TIMESTAMPTZ '2026-09-20 10:00Z', false),"
                " (:s, 'sub-2', 'o-2', 'acct-1', 'EML-HST', 2, DATE '2026-10-01', TIMESTAMPTZ '2026-09-20 10:00Z', false)"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.subscription_change (seller_id, subscription_id, order_id, account_id, kind, quantity,"
                " effective_on, requested_at) VALUES"
                " (:s, 'sub-1', 'o-1-cancel', 'acct-1', 'cancellation', NULL, DATE '2026-10-15', TIMESTAMPTZ '2026-09-25 10:00Z')"
            ),
            p,
        )

    async with runtime.transaction() as session:
        run = await close_period(runtime, session, tenant, "2026-10", distributor)
    assert (run.created, run.buyers, run.lines, run.unrated) == (True, 1, 2, [])

    written = await charges(runtime, tenant)
    # 4 × 6.75 × 15/31 (1–15 October) and 2 × 6.75 for the whole month: 13.06 + 13.50 = 26.56
    assert [(end, currency) for _, _, end, _, currency in written] == [("2026-10-15", "USD"), ("2026-10-31", "USD")]
    assert sum((amount for *_, amount, _ in written), Decimal(0)).quantize(Decimal("0.01")) == Decimal("26.56")
    event = await period_closed(runtime, tenant, "acct-1")
    assert event is not None
    assert sorted(line["line_id"] for line in event["lines"]) == sorted(line_id for _, line_id, *_ in written)
    assert len({line["line_id"] for line in event["lines"]}) == 2

    async with runtime.transaction() as session:
        again = await close_period(runtime, session, tenant, "2026-10", distributor)
    assert not again.created and again.lines == 2
    assert await charges(runtime, tenant) == written  # a replay writes nothing


# --- a seller billing EUR and USD buyers ---------------------------------------------------------


def per_unit(currency: str, unit: str, effective_from: str = "2026-01-01") -> dict[str, Any]:
    return {"effective_from": effective_from, "currency": currency, "price": {"model": "per_unit", "unit_price": unit}}


async def seed_buyers(app: Any, seller: str) -> None:
    """EUR, USD and GBP buyers of one seller: 5, 3 and 2 licences, backup usage, one support plan."""
    p = {"s": seller}
    async with app.state.runtime.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO rating.buyer_account (seller_id, account_id, external_id, name, currency, revision) VALUES"
                " (:s, 'acct-eu', 'eu', 'Contoso GmbH', 'EUR', 1), (:s, 'acct-us', 'us', 'Contoso Inc', 'USD', 1),"
                " (:s, 'acct-gb', 'gb', 'Contoso Ltd', 'GBP', 1)"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.subscription (seller_id, subscription_id, order_id, account_id, product_code, quantity,"
                " start_on, ordered_at, setup_exempt) VALUES"
                " (:s, 'sub-eu', 'o-eu', 'acct-eu', 'M365', 5, DATE '2026-09-01', TIMESTAMPTZ '2026-08-20 10:00Z', false),"
                " (:s, 'sub-us', 'o-us', 'acct-us', 'M365', 3, DATE '2026-09-01', TIMESTAMPTZ '2026-08-20 10:00Z', false),"
                " (:s, 'sub-us-sup', 'o-us-sup', 'acct-us', 'SUP', 1, DATE '2026-09-01', TIMESTAMPTZ '2026-08-20 10:00Z', false),"
                " (:s, 'sub-gb', 'o-gb', 'acct-gb', 'M365', 2, DATE '2026-09-01', TIMESTAMPTZ '2026-08-20 10:00Z', false)"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.usage_record (seller_id, record_id, account_id, product_code, quantity, occurred_at) VALUES"
                " (:s, 'u-eu', 'acct-eu', 'BKP-GB', 12.5, TIMESTAMPTZ '2026-10-10 10:00Z'),"
                " (:s, 'u-us', 'acct-us', 'BKP-GB', 7.25, TIMESTAMPTZ '2026-10-10 10:00Z')"
            ),
            p,
        )


async def seller_with_two_price_lists(client: Any, seller: str) -> None:
    assert (await client.put("/v1/seller", headers=h(seller), json={"currency": "EUR", "currencies": ["USD"]})).status_code == 200
    for code, rule in (("M365", "contracted"), ("BKP-GB", "usage_sum"), ("SUP", "contracted")):
        r = await client.put(f"/v1/products/{code}", headers=h(seller), json={"name": code, "quantity_rule": rule})
        assert r.status_code == 200, r.text
    for code, body in (
        ("M365", per_unit("EUR", "20.60")),
        ("M365", per_unit("USD", "22.40")),
        ("BKP-GB", per_unit("EUR", "0.10")),
        ("BKP-GB", per_unit("USD", "0.12")),
        ("SUP", per_unit("EUR", "49.00")),  # no USD price: the USD buyer's support is reported
    ):
        r = await client.put(f"/v1/price-list/{code}", headers=h(seller), json=body)
        assert r.status_code == 200, r.text


def unpriced_buyers(currency: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("billing_bill_run_unpriced_buyers_total", {"currency": currency}) or 0.0


async def test_a_seller_bills_eur_and_usd_buyers_from_a_price_list_per_currency(client: Any, app: Any, tenant: str) -> None:
    await seller_with_two_price_lists(client, tenant)
    listed = (await client.get("/v1/price-list", headers=h(tenant))).json()
    entries = listed["items"] if isinstance(listed, dict) else listed
    # One entry per currency at one date: the USD entry did not replace the EUR one.
    assert sorted((e["product_code"], e["currency"], e["price"]["unit_price"]) for e in entries if e["product_code"] == "M365") == [
        ("M365", "EUR", "20.60"),
        ("M365", "USD", "22.40"),
    ]
    gbp = await client.put("/v1/price-list/M365", headers=h(tenant), json=per_unit("GBP", "18.00"))
    assert (gbp.status_code, gbp.json()["code"]) == (422, "price_currency_mismatch")  # GBP is not one of the seller's currencies

    await seed_buyers(app, tenant)
    gbp_before, usd_before = unpriced_buyers("GBP"), unpriced_buyers("USD")
    r = await client.post("/v1/bill-runs", headers=h(tenant), json={"period": "2026-10"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert (run["buyers"], run["lines"]) == (2, 4)
    assert sorted((u["account_id"], u["product_code"], u["reason"], u["currency"], u["priced_in"]) for u in run["unrated"]) == [
        ("acct-gb", "M365", "currency_mismatch", "GBP", "EUR"),
        ("acct-us", "SUP", "currency_mismatch", "USD", "EUR"),
    ]
    assert run["unpriced_currencies"] == [
        {"currency": "GBP", "account_ids": ["acct-gb"], "product_codes": ["M365"]},
        {"currency": "USD", "account_ids": ["acct-us"], "product_codes": ["SUP"]},
    ]
    assert (unpriced_buyers("GBP") - gbp_before, unpriced_buyers("USD") - usd_before) == (1.0, 1.0)
    # The run's summary, read back, reports the same.
    fetched = (await client.get(f"/v1/bill-runs/{run['bill_run_id']}", headers=h(tenant))).json()
    assert fetched == {**run, "created": False}

    runtime = app.state.runtime
    eu, us = await period_closed(runtime, tenant, "acct-eu"), await period_closed(runtime, tenant, "acct-us")
    assert eu is not None and us is not None and await period_closed(runtime, tenant, "acct-gb") is None
    assert eu["currency"] == "EUR" and us["currency"] == "USD"
    assert sorted((line["product_code"], line["amount"]["amount"], line["amount"]["currency"]) for line in eu["lines"]) == [
        ("BKP-GB", "1.250", "EUR"),
        ("M365", "103.00", "EUR"),  # 12.5 × 0.10; 5 × 20.60
    ]
    assert sorted((line["product_code"], line["amount"]["amount"], line["amount"]["currency"]) for line in us["lines"]) == [
        ("BKP-GB", "0.8700", "USD"),
        ("M365", "67.20", "USD"),  # 7.25 × 0.12; 3 × 22.40
    ]
    assert sum((Decimal(line["amount"]["amount"]) for line in eu["lines"]), Decimal(0)).quantize(Decimal("0.01")) == Decimal("104.25")
    assert sum((Decimal(line["amount"]["amount"]) for line in us["lines"]), Decimal(0)).quantize(Decimal("0.01")) == Decimal("68.07")


async def test_an_order_is_checked_for_a_price_in_its_buyers_currency(client: Any, app: Any, tenant: str, distributor: str) -> None:
    await seller_with_two_price_lists(client, tenant)
    await seed_buyers(app, tenant)
    # The partner's account at the distributor is in USD; the distributor's wholesale list has M365 in EUR only.
    async with app.state.runtime.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO rating.buyer_account (seller_id, account_id, external_id, name, currency, revision) VALUES (:d, :a, :t, 'The partner', 'USD', 1)"
            ),
            {"d": distributor, "a": account_id(distributor, tenant), "t": tenant},
        )
        await session.execute(
            text(
                "INSERT INTO rating.price (seller_id, product_code, effective_from, currency, model, updated_at)"
                " VALUES (:d, 'M365', DATE '2026-01-01', 'EUR', CAST(:m AS jsonb), now())"
            ),
            {"d": distributor, "m": json.dumps({"model": "per_unit", "unit_price": "15.00"})},
        )

    ok = await client.post("/v1/order-checks", headers=h(tenant), json={"product_code": "M365", "start_on": "2026-12-01", "account_id": "acct-us"})
    assert ok.status_code == 200, ok.text
    assert {k: ok.json()[k] for k in ("currency", "period", "priced", "wholesale_priced")} == {
        "currency": "USD",
        "period": "2026-12",
        "priced": True,
        "wholesale_priced": False,  # reported, not refused: the distributor's list
    }

    no = await client.post("/v1/order-checks", headers=h(tenant), json={"product_code": "SUP", "start_on": "2026-12-01", "account_id": "acct-us"})
    assert no.status_code == 422 and no.headers["content-type"].startswith("application/problem+json")
    assert {k: no.json()[k] for k in ("code", "currency", "priced_in", "unpriced_products", "period")} == {
        "code": "no_price_in_currency",
        "currency": "USD",
        "priced_in": "EUR",
        "unpriced_products": ["SUP"],
        "period": "2026-12",
    }
    # A buyer not posted yet is checked by the currency it will have.
    gbp = await client.post("/v1/order-checks", headers=h(tenant), json={"product_code": "M365", "start_on": "2026-12-01", "currency": "GBP"})
    assert (gbp.status_code, gbp.json()["code"]) == (422, "no_price_in_currency")
    for body, status, code in (
        ({"product_code": "M365", "start_on": "2026-12-01", "account_id": "acct-nobody"}, 404, "account_not_found"),
        ({"product_code": "NOPE", "start_on": "2026-12-01", "currency": "USD"}, 404, "product_not_found"),
        ({"product_code": "M365", "start_on": "2026-12-01", "currency": "usd"}, 422, "invalid_currency"),
    ):
        r = await client.post("/v1/order-checks", headers=h(tenant), json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text

    # The order posted anyway is visible as unbillable on the subscription, as rating sees it.
    sub = (await client.get("/v1/subscriptions/sub-us-sup", headers=h(tenant))).json()
    assert {k: sub["pricing"][k] for k in ("currency", "priced", "problem", "priced_in")} == {
        "currency": "USD",
        "priced": False,
        "problem": "no_price_in_currency",
        "priced_in": "EUR",
    }
    billable = (await client.get("/v1/subscriptions/sub-us", headers=h(tenant))).json()
    assert billable["pricing"]["priced"] is True
