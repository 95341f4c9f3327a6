"""A close writes every distinct charge (line ids never collide), and a seller billing buyers in
several currencies: a price list per currency, and a buyer whose currency has no price reported.

The projections are written with SQL, as the consumers would have left them (see
test_close_at_scale); the close runs against the real PostgreSQL and writes to the outbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from billing_events import derived_event_id
from billing_runtime.service import ServiceRuntime
from rating.billrun.service import bill_run_id, close_period
from rating.config import Settings
from rating.db import metadata
from rating.period import Period

from .conftest import TODAY


@pytest.fixture
async def runtime(migrated: str, distributor: str) -> AsyncIterator[ServiceRuntime]:
    settings = Settings(database_url=migrated, clock_fixed_at=TODAY, distributor_id=distributor, scheduler_enabled=False)
    runtime = ServiceRuntime("rating", settings, metadata)
    yield runtime
    await runtime.engine.dispose()


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
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_two_daily_subscriptions_starting_the_same_day_are_both_written_and_emitted(
    runtime: ServiceRuntime, tenant: str, distributor: str
) -> None:
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
    assert sum(amount for *_, amount, _ in written).quantize(Decimal("0.01")) == Decimal("26.56")
    event = await period_closed(runtime, tenant, "acct-1")
    assert event is not None
    assert sorted(line["line_id"] for line in event["lines"]) == sorted(line_id for _, line_id, *_ in written)
    assert len({line["line_id"] for line in event["lines"]}) == 2

    async with runtime.transaction() as session:
        again = await close_period(runtime, session, tenant, "2026-10", distributor)
    assert not again.created and again.lines == 2
    assert await charges(runtime, tenant) == written  # a replay writes nothing
