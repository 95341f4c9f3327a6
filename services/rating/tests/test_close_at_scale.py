"""Closing a period for a large seller, and an order at the very instant of its bill run.

The projections are written with set-based SQL (as the consumers would have left them), not with
events or HTTP calls: what is under test is the close, not the way in."""

from __future__ import annotations

import gc
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from billing_events import derived_event_id
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import tenant_headers
from rating.billrun import service
from rating.billrun.service import bill_run_id, close_period
from rating.period import Period

from .conftest import TODAY

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

SUBSCRIPTIONS = 40_000  # above asyncpg's 32,767 parameters, which an IN list of their ids passed
PER_BUYER = 10
PRICES = {"SCALE-A": Decimal("2.50"), "SCALE-B": Decimal("0.1375")}


async def seed_large_seller(runtime: ServiceRuntime, seller: str) -> None:
    """4,000 buyers with 10 subscriptions each over two products, every tenth subscription
    raised to 7 from 10 October (arrears, no proration: October bills 7)."""
    p = {"s": seller, "n": SUBSCRIPTIONS, "per": PER_BUYER, "at": TODAY}
    async with runtime.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO rating.product (seller_id, code, name, unit_price, currency, quantity_rule, kind, updated_at)"
                " VALUES (:s, 'SCALE-A', 'Licence A', :a, 'EUR', 'contracted', 'recurring', :at),"
                " (:s, 'SCALE-B', 'Licence B', :b, 'EUR', 'contracted', 'recurring', :at)"
            ),
            {**p, "a": PRICES["SCALE-A"], "b": PRICES["SCALE-B"]},
        )
        await session.execute(
            text(
                "INSERT INTO rating.buyer_account (seller_id, account_id, external_id, name, currency, revision)"
                " SELECT :s, 'acct-' || b, 'b' || b, 'Buyer ' || b, 'EUR', 1 FROM generate_series(0, CAST(:n AS int) / CAST(:per AS int) - 1) AS b"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.subscription (seller_id, subscription_id, order_id, account_id, product_code, quantity,"
                " start_on, ordered_at, setup_exempt)"
                " SELECT :s, 'sub-' || i, 'ord-' || i, 'acct-' || (i / CAST(:per AS int)), CASE WHEN i % 2 = 0 THEN 'SCALE-A' ELSE 'SCALE-B' END,"
                " 1 + i % 5, DATE '2026-08-01', TIMESTAMPTZ '2026-07-30 10:00Z', false FROM generate_series(0, CAST(:n AS int) - 1) AS i"
            ),
            p,
        )
        await session.execute(
            text(
                "INSERT INTO rating.subscription_change (seller_id, subscription_id, order_id, account_id, kind, quantity,"
                " effective_on, requested_at)"
                " SELECT :s, 'sub-' || i, 'chg-' || i, 'acct-' || (i / CAST(:per AS int)), 'quantity', 7, DATE '2026-10-10',"
                " TIMESTAMPTZ '2026-10-05 10:00Z' FROM generate_series(0, CAST(:n AS int) - 1, 10) AS i"
            ),
            p,
        )


def expected_total() -> Decimal:
    total = Decimal(0)
    for i in range(SUBSCRIPTIONS):
        quantity = 7 if i % 10 == 0 else 1 + i % 5
        total += quantity * PRICES["SCALE-A" if i % 2 == 0 else "SCALE-B"]
    return total


async def written(runtime: ServiceRuntime, seller: str) -> dict[str, Any]:
    run = bill_run_id(seller, Period.parse("2026-10"))
    events = [derived_event_id("period_closed", run, f"acct-{b}") for b in range(SUBSCRIPTIONS // PER_BUYER)]
    async with runtime.sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM rating.rated_charge WHERE seller_id = :s) AS charges,"
                    " (SELECT coalesce(sum(amount), 0) FROM rating.rated_charge WHERE seller_id = :s) AS amount,"
                    " (SELECT count(*) FROM rating.outbox WHERE event_id = ANY(:events)) AS events,"
                    " (SELECT count(*) FROM rating.bill_run WHERE seller_id = :s) AS runs"
                ),
                {"s": seller, "events": events},
            )
        ).one()
    return dict(row._mapping)


async def test_a_seller_with_40000_subscriptions_closes_its_period_once(
    runtime: ServiceRuntime, tenant: str, distributor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_large_seller(runtime, tenant)
    # Whether the cyclic collector ran while each slice's PeriodClosed events were built.
    collecting: list[bool] = []
    build = service._period_closed

    def recorded(*args: Any) -> Any:
        collecting.append(gc.isenabled())
        return build(*args)

    monkeypatch.setattr(service, "_period_closed", recorded)
    paused_before = REGISTRY.get_sample_value("billing_bill_run_gc_paused_seconds_total") or 0.0

    async with runtime.transaction() as session:
        run = await close_period(runtime, session, tenant, "2026-10", distributor)

    # Several slices, each emitted with collection paused; the collector runs again after the close.
    assert len(collecting) >= SUBSCRIPTIONS // service.SLICE_SUBSCRIPTIONS and not any(collecting)
    assert gc.isenabled()
    assert (REGISTRY.get_sample_value("billing_bill_run_gc_paused_seconds_total") or 0.0) > paused_before

    buyers = SUBSCRIPTIONS // PER_BUYER
    assert run.created
    assert (run.buyers, run.lines, run.unrated) == (buyers, buyers * 2, [])  # one line per buyer and product
    first = await written(runtime, tenant)
    assert first == {"charges": buyers * 2, "amount": expected_total(), "events": buyers, "runs": 1}

    async with runtime.transaction() as session:
        again = await close_period(runtime, session, tenant, "2026-10", distributor)
    assert not again.created and again.lines == run.lines
    assert await written(runtime, tenant) == first  # a replay writes nothing


async def test_an_order_at_the_instant_of_the_bill_run_is_billed_by_it_as_previewed(client: httpx.AsyncClient, app: Any, tenant: str) -> None:
    """Frozen clock: the order arrives at the very instant the run claims the period. The run
    bills the order's October as the preview showed it, and November does not bill October again."""
    body = {"name": "Hosted email", "unit_price": "6.75", "currency": "USD", "quantity_rule": "contracted"}
    assert (await client.put("/v1/products/EML-HST", headers=tenant_headers(tenant), json=body)).status_code == 200
    runtime: ServiceRuntime = app.state.runtime
    assert runtime.clock.now() == TODAY
    async with runtime.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO rating.buyer_account (seller_id, account_id, external_id, name, currency, revision)"
                " VALUES (:s, 'acct-now', 'now', 'Contoso', 'USD', 1)"
            ),
            {"s": tenant},
        )
        await session.execute(
            text(
                "INSERT INTO rating.subscription (seller_id, subscription_id, order_id, account_id, product_code, quantity,"
                " start_on, ordered_at, setup_exempt)"
                " VALUES (:s, 'sub-now', 'ord-now', 'acct-now', 'EML-HST', 4, DATE '2026-10-01', :now, false)"
            ),
            {"s": tenant, "now": TODAY},  # backdated to October, received at the run's instant
        )

    r = await client.get("/v1/accounts/acct-now/charges", params={"period": "2026-10"}, headers=tenant_headers(tenant))
    assert r.status_code == 200, r.text
    preview = r.json()
    assert [(line["quantity"], line["amount"]["amount"], line["late"]) for line in preview["lines"]] == [("4", "27.00", False)]

    r = await client.post("/v1/bill-runs", json={"period": "2026-10"}, headers=tenant_headers(tenant))
    assert r.status_code == 201, r.text
    assert r.json()["lines"] == 1
    async with runtime.sessions() as session:
        billed = (
            await session.execute(
                text("SELECT line_id, amount, late FROM rating.rated_charge WHERE seller_id = :s AND bill_run_id = :r"),
                {"s": tenant, "r": bill_run_id(tenant, Period.parse("2026-10"))},
            )
        ).all()
    assert [(b.line_id, b.amount, b.late) for b in billed] == [(line["line_id"], Decimal(line["amount"]["amount"]), line["late"]) for line in preview["lines"]]

    r = await client.get("/v1/accounts/acct-now/charges", params={"period": "2026-11"}, headers=tenant_headers(tenant))
    assert r.status_code == 200, r.text
    november = r.json()["lines"]
    assert [(line["service_period_start"], line["late"]) for line in november] == [("2026-11-01", False)]  # October not again


async def test_a_close_that_fails_leaves_the_collector_running(runtime: ServiceRuntime, tenant: str, distributor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A close that fails midway (here the charges' write) rolls back, and the cyclic collector it
    paused runs again."""
    await seed_large_seller(runtime, tenant)

    async def failing(*args: Any) -> int:
        assert not gc.isenabled()  # paused while the slice is written
        raise RuntimeError("the database went away")

    monkeypatch.setattr(service.repo, "add_charges", failing)
    with pytest.raises(RuntimeError, match="went away"):
        async with runtime.transaction() as session:
            await close_period(runtime, session, tenant, "2026-10", distributor)
    assert gc.isenabled()
    assert await written(runtime, tenant) == {"charges": 0, "amount": 0, "events": 0, "runs": 0}
