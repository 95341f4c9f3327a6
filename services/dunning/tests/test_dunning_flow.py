"""Dunning policies against a real PostgreSQL and a real Tansu broker: the clock is walked day by
day, steps are reached on their days and once, suspension follows the policy and the hierarchy,
and paying (or crediting) in full reinstates."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from dunning_testkit import DUE, case_when, credit_note, customer_upserted, eventually, invoice_issued, payment_failed, payment_succeeded, standing_when
from prometheus_client import REGISTRY

from billing_events import AccountReinstated, AccountSuspended, CloudEvent, DunningStepReached, Money, PaymentRetryRequested, account_id
from billing_events.topics import DUNNING
from billing_runtime.api import DISTRIBUTOR
from billing_runtime.clock import FixedClock
from billing_runtime.testing import publish_events, read_events, serve, tenant_headers
from dunning.config import Settings
from dunning.main import build

Walk = tuple[httpx.AsyncClient, FixedClock]


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 6, 0, tzinfo=UTC)


@pytest.fixture
async def walking(settings: Settings) -> AsyncIterator[Walk]:
    """dunning with a clock the test moves, and no background loop (the test evaluates)."""
    app = build(settings.model_copy(update={"clock_fixed_at": at(DUE), "evaluate_in_background": False}))
    clock = app.state.runtime.clock
    assert isinstance(clock, FixedClock)
    async with serve(app) as client:
        yield client, clock


async def evaluate(client: httpx.AsyncClient, tenant: str, times: int = 1) -> list[tuple[int, str]]:
    """POST evaluate `times` times at once; the steps reached over all of the answers."""
    answers = await asyncio.gather(*(client.post("/v1/dunning/evaluate", headers=tenant_headers(tenant)) for _ in range(times)))
    reached: list[tuple[int, str]] = []
    for answer in answers:
        assert answer.status_code == 200, answer.text
        reached += [(r["step"], r["action"]) for r in answer.json()["reached"]]
    return sorted(reached)


def of_type(seen: list[CloudEvent[Any]], kind: type, **match: Any) -> list[Any]:
    return [e.data for e in seen if isinstance(e.data, kind) and all(getattr(e.data, k) == v for k, v in match.items())]


async def test_policy_default_replace_and_refusals(client: httpx.AsyncClient, tenant: str) -> None:
    default = (await client.get("/v1/dunning-policy", headers=tenant_headers(tenant))).json()
    assert default["configured"] is False and default["cascade_to_customers"] is False
    assert [(s["step"], s["days_after_due"], s["action"]) for s in default["steps"]] == [
        (1, 1, "remind"),
        (2, 7, "retry"),
        (3, 7, "remind"),
        (4, 14, "final_notice"),
        (5, 21, "suspend"),
    ]
    body = {"steps": [{"days_after_due": 30, "action": "suspend"}, {"days_after_due": 3, "action": "remind"}]}
    stored = await client.put("/v1/dunning-policy", headers=tenant_headers(tenant), json=body)
    assert stored.status_code == 200, stored.text
    again = (await client.get("/v1/dunning-policy", headers=tenant_headers(tenant))).json()
    assert again["configured"] is True
    assert [(s["step"], s["days_after_due"], s["action"]) for s in again["steps"]] == [(1, 3, "remind"), (2, 30, "suspend")]

    refused = {
        "twice": {"steps": [{"days_after_due": 3, "action": "remind"}, {"days_after_due": 3, "action": "remind"}]},
        "two suspends": {"steps": [{"days_after_due": 3, "action": "suspend"}, {"days_after_due": 9, "action": "suspend"}]},
        "cascade by a partner": {"steps": [{"days_after_due": 3, "action": "suspend"}], "cascade_to_customers": True},
    }
    for why, bad in refused.items():
        answer = await client.put("/v1/dunning-policy", headers=tenant_headers(tenant), json=bad)
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_dunning_policy"), why
    bad_bodies: tuple[dict[str, Any], ...] = (
        {"steps": []},
        {"steps": [{"days_after_due": 0, "action": "remind"}]},
        {"steps": [{"days_after_due": 2, "action": "call"}]},
    )
    for bad_body in bad_bodies:
        answer = await client.put("/v1/dunning-policy", headers=tenant_headers(tenant), json=bad_body)
        assert (answer.status_code, answer.json()["code"]) == (422, "validation_error")
    # Nothing refused was stored.
    assert (await client.get("/v1/dunning-policy", headers=tenant_headers(tenant))).json()["steps"] == again["steps"]
    assert (await client.get("/v1/dunning-policy")).status_code == 401


async def test_direct_debit_failure_reminders_retry_suspension_payment_reinstatement(walking: Walk, tenant: str, kafka_bootstrap: str) -> None:
    client, clock = walking
    invoice_id, buyer = str(uuid.uuid4()), account_id(tenant, "c-1")
    # The direct debit is collected on the due date and fails.
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id), payment_failed(tenant, invoice_id, "dd-1", "1516.25", DUE))
    standing = await standing_when(client, tenant, buyer, lambda s: s["last_payment_failure"] is not None)
    assert standing["last_payment_failure"]["reason_code"] == "insufficient_funds"
    assert (standing["step"], standing["overdue_cases"], standing["suspended"]) == (None, 0, False)

    expected = {1: [(1, "remind")], 7: [(2, "retry"), (3, "remind")], 14: [(4, "final_notice")], 21: [(5, "suspend")]}
    for day in range(1, 24):
        clock.set(at(DUE + timedelta(days=day)))
        # Three evaluations at once (as from replicas, or the loop and the API): each step once.
        assert await evaluate(client, tenant, times=3) == expected.get(day, []), f"day {day}"
        if day == 14:
            before = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
            assert (before["suspended"], before["step"], before["step_action"]) == (False, 4, "final_notice")

    suspended = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert (suspended["suspended"], suspended["suspended_on"], suspended["step"], suspended["step_action"]) == (True, "2026-12-26", 5, "suspend")
    assert suspended["amount_overdue"] == [{"amount": "1516.25", "currency": "USD"}]
    assert suspended["current_case"]["days_overdue"] == 23 and suspended["cascaded_from"] is None

    paid_on = DUE + timedelta(days=24)
    await publish_events(kafka_bootstrap, payment_succeeded(tenant, invoice_id, "dd-2", "1516.25", paid_on=paid_on))
    # The standing is one snapshot: the reinstatement shows with the closed case, never before it.
    cleared = await standing_when(client, tenant, buyer, lambda s: not s["suspended"])
    assert (cleared["open_cases"], cleared["amount_overdue"], cleared["step"]) == (0, [], None)
    closed = await case_when(client, tenant, invoice_id, lambda c: c["status"] == "closed")
    assert (closed["close_reason"], closed["closed_on"], closed["step"]) == ("paid", paid_on.isoformat(), 5)
    clock.set(at(DUE + timedelta(days=40)))
    assert await evaluate(client, tenant) == []

    seen = await read_events(
        kafka_bootstrap, DUNNING.name, until=lambda s: bool(of_type(s, AccountReinstated, account_id=buyer)), match=lambda e: e.tenant == tenant, timeout=60
    )
    steps = of_type(seen, DunningStepReached, invoice_id=invoice_id)
    assert [(s.step, s.action, s.days_overdue, s.reached_on) for s in steps] == [
        (1, "remind", 1, date(2026, 12, 6)),
        (2, "retry", 7, date(2026, 12, 12)),
        (3, "remind", 7, date(2026, 12, 12)),
        (4, "final_notice", 14, date(2026, 12, 19)),
        (5, "suspend", 21, date(2026, 12, 26)),
    ]
    assert all(s.amount_overdue == Money.of("1516.25", "USD") for s in steps)
    [retry] = of_type(seen, PaymentRetryRequested, invoice_id=invoice_id)
    assert (retry.attempt, retry.account_id) == (1, buyer)
    [suspension] = of_type(seen, AccountSuspended, account_id=buyer)
    [reinstatement] = of_type(seen, AccountReinstated, account_id=buyer)
    assert (suspension.suspended_on, suspension.cascaded_from, reinstatement.reinstated_on) == (date(2026, 12, 26), None, paid_on)
    metrics = (await client.get("/metrics/")).text
    # The series exist from start-up at 0 (dashboards say 0): a suspension counts 1 or more.
    suspended = re.search(r'^billing_dunning_steps_reached_total\{action="suspend"\} (\S+)$', metrics, re.MULTILINE)
    assert suspended is not None and float(suspended.group(1)) >= 1
    assert "billing_dunning_reinstatements_total" in metrics


async def test_the_background_loop_reaches_steps_by_the_clock(settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    app = build(settings.model_copy(update={"clock_fixed_at": at(DUE), "evaluate_interval_seconds": 0.2}))
    async with serve(app) as client:
        invoice_id = str(uuid.uuid4())
        await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id))
        await case_when(client, tenant, invoice_id, lambda c: True)
        app.state.runtime.clock.set(at(DUE + timedelta(days=8)))
        case = await case_when(client, tenant, invoice_id, lambda c: c["step"] == 3)
        assert (case["step_action"], case["step_reached_on"]) == ("remind", "2026-12-13")
        # The loop also refreshes the open-cases gauge (other tests' cases share the database: at least ours).
        await eventually(
            lambda: (REGISTRY.get_sample_value("billing_dunning_open_cases", {"step": "remind"}) or 0) >= 1, "the open-cases gauge", 10, interval=0.1
        )
        metrics = await client.get("/metrics/")
        assert 'billing_dunning_open_cases{step="remind"}' in metrics.text


@pytest.mark.consume(False)  # events handed over in process (deliver)
@pytest.mark.parametrize(
    "credited",
    [
        pytest.param("60.00", id="what_is_left"),
        # More than is open (the rest of what was paid goes back), negative as invoicing emits it.
        pytest.param("-100.00", id="the_whole_invoice"),
    ],
)
async def test_a_credit_note_clearing_a_partly_paid_overdue_invoice_closes_once_and_reinstates(
    client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str, credited: str
) -> None:
    # The client's clock is 2026-12-15; an invoice due 30 days before arrives: every step at once, suspended.
    invoice_id, buyer = str(uuid.uuid4()), account_id(tenant, "c-1")
    await publish_events(client, invoice_issued(tenant, invoice_id, total="100.00", due_on=date(2026, 11, 15)))
    suspended = await standing_when(client, tenant, buyer, lambda s: s["suspended"])
    assert (suspended["step"], suspended["suspended_on"]) == (5, "2026-12-15")
    await publish_events(client, payment_succeeded(tenant, invoice_id, "bank-1", "40.00"))
    await case_when(client, tenant, invoice_id, lambda c: c["amount_open"] == "60.00")
    await publish_events(client, credit_note(tenant, invoice_id, credited, date(2026, 12, 14)))
    closed = await case_when(client, tenant, invoice_id, lambda c: c["status"] == "closed")
    assert (closed["close_reason"], closed["closed_on"], closed["amount_open"], closed["amount_paid"]) == ("credited", "2026-12-14", "0.00", "40.00")
    clear = await standing_when(client, tenant, buyer, lambda s: not s["suspended"])
    assert (clear["open_cases"], clear["amount_open"], clear["amount_overdue"]) == (0, [], [])


async def test_hierarchy_customer_suspension_stays_below_partner_cascade_goes_down(
    walking: Walk, tenant: str, kafka_bootstrap: str, settings: Settings
) -> None:
    client, clock = walking
    partner = tenant
    partner_account = account_id(DISTRIBUTOR, partner)
    loyal, late = account_id(partner, "loyal"), account_id(partner, "late")
    suspend_at_once = {"steps": [{"days_after_due": 1, "action": "suspend"}]}
    assert (await client.put("/v1/dunning-policy", headers=tenant_headers(partner), json=suspend_at_once)).status_code == 200
    cascading = {**suspend_at_once, "cascade_to_customers": True}
    assert (await client.put("/v1/dunning-policy", headers=tenant_headers(DISTRIBUTOR), json=cascading)).status_code == 200

    # The partner's customers: one known from CustomerUpserted only, one with an overdue invoice of its own.
    own_case, partner_case = str(uuid.uuid4()), str(uuid.uuid4())
    await publish_events(kafka_bootstrap, customer_upserted(partner, "loyal"), invoice_issued(partner, own_case, customer="late"))
    await publish_events(kafka_bootstrap, invoice_issued(DISTRIBUTOR, partner_case, customer=partner))
    await case_when(client, partner, own_case, lambda c: True)
    await case_when(client, DISTRIBUTOR, partner_case, lambda c: True)
    clock.set(at(DUE + timedelta(days=1)))
    # The customer falls behind first: it is suspended, its partner is not.
    assert await evaluate(client, partner) == [(1, "suspend")]
    late_standing = (await client.get(f"/v1/accounts/{late}/standing", headers=tenant_headers(partner))).json()
    assert (late_standing["suspended"], late_standing["cascaded_from"]) == (True, None)
    partner_standing = (await client.get(f"/v1/accounts/{partner_account}/standing", headers=tenant_headers(DISTRIBUTOR))).json()
    assert (partner_standing["suspended"], partner_standing["overdue_cases"]) == (False, 1)

    # Wait until the customer event is applied (it rides another topic than the invoices).
    await eventually(lambda: linked(settings.database_url, partner, loyal))
    # The distributor suspends the partner; its policy cascades to the partner's customers.
    assert await evaluate(client, DISTRIBUTOR) == [(1, "suspend")]
    partner_standing = (await client.get(f"/v1/accounts/{partner_account}/standing", headers=tenant_headers(DISTRIBUTOR))).json()
    assert partner_standing["suspended"] is True
    loyal_standing = (await client.get(f"/v1/accounts/{loyal}/standing", headers=tenant_headers(partner))).json()
    assert (loyal_standing["suspended"], loyal_standing["cascaded_from"], loyal_standing["open_cases"]) == (True, partner_account, 0)

    # A customer the partner adds while suspended follows it.
    newcomer = account_id(partner, "newcomer")
    await publish_events(kafka_bootstrap, customer_upserted(partner, "newcomer"))
    joined = await standing_when(client, partner, newcomer, lambda s: s["suspended"])
    assert joined["cascaded_from"] == partner_account

    # The partner pays: it and the customers suspended through it are reinstated; the customer
    # suspended for its own debt stays suspended.
    await publish_events(kafka_bootstrap, payment_succeeded(DISTRIBUTOR, partner_case, "bank-9", "1516.25", customer=partner, paid_on=date(2026, 12, 7)))
    await standing_when(client, DISTRIBUTOR, partner_account, lambda s: not s["suspended"])
    await standing_when(client, partner, loyal, lambda s: not s["suspended"])
    await standing_when(client, partner, newcomer, lambda s: not s["suspended"])
    late_standing = (await client.get(f"/v1/accounts/{late}/standing", headers=tenant_headers(partner))).json()
    assert late_standing["suspended"] is True

    seen = await read_events(
        kafka_bootstrap,
        DUNNING.name,
        until=lambda s: bool(of_type(s, AccountReinstated, account_id=loyal)),
        match=lambda e: e.tenant in (partner, DISTRIBUTOR),
        timeout=60,
    )
    [cascaded] = of_type(seen, AccountSuspended, account_id=loyal)
    assert (cascaded.cascaded_from, cascaded.seller_id) == (partner_account, partner_account)
    assert len(of_type(seen, AccountSuspended, account_id=late)) == 1 and of_type(seen, AccountReinstated, account_id=late) == []
    assert len(of_type(seen, AccountSuspended, account_id=partner_account)) == 1


async def linked(database_url: str, partner: str, customer: str) -> bool:
    """Whether dunning has applied the customer's CustomerUpserted (seen in its database)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT 1 FROM dunning.account_link WHERE account_id = $1 AND partner = $2", customer, partner) is not None
    finally:
        await conn.close()
