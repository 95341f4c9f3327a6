"""dunning against a real PostgreSQL and a real Tansu broker: invoice, payment and settlement
events in (in any order, any number of times), cases and standing out over HTTP, case events
out through the outbox."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from dunning_testkit import case_events, case_when, eventually, invoice_issued, invoice_settled, payment_succeeded

from billing_events import DunningCaseClosed, DunningCaseOpened, Money, account_id
from billing_events.topics import DUNNING
from billing_runtime.testing import (
    REJOIN_SESSION_TIMEOUT_MS,
    all_events,
    dead_lettered,
    deliver,
    outbox_drained,
    publish_events,
    read_events,
    serve,
    tenant_headers,
)
from dunning.case import repository as case_repo
from dunning.case.service import case_id
from dunning.config import Settings
from dunning.main import build


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_case_opens_shrinks_and_closes_once(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    invoice_id = str(uuid.uuid4())
    buyer = account_id(tenant, "c-1")
    await publish_events(client, invoice_issued(tenant, invoice_id))
    opened = await case_when(client, tenant, invoice_id, lambda c: True)
    assert opened["case_id"] == case_id(invoice_id)
    assert (opened["status"], opened["amount_open"], opened["days_overdue"], opened["account_id"]) == ("open", "1516.25", 10, buyer)
    assert (opened["closed_on"], opened["close_reason"]) == (None, None)

    await publish_events(client, payment_succeeded(tenant, invoice_id, "bank-1", "1000.00"))
    await case_when(client, tenant, invoice_id, lambda c: c["amount_open"] == "516.25")
    standing = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert {k: standing[k] for k in ("account_id", "open_cases", "overdue_cases", "amount_open", "amount_overdue", "suspended")} == {
        "account_id": buyer,
        "open_cases": 1,
        "overdue_cases": 1,
        "amount_open": [{"amount": "516.25", "currency": "USD"}],
        "amount_overdue": [{"amount": "516.25", "currency": "USD"}],
        "suspended": False,
    }
    # Ten days overdue under the default policy: +1 remind, +7 retry, +7 remind reached on arrival.
    assert (standing["step"], standing["step_action"], standing["current_case"]["invoice_id"]) == (3, "remind", invoice_id)

    settled = invoice_settled(tenant, invoice_id)
    # The settlement delivered twice, and once more under another id (a re-derived event).
    await publish_events(client, settled, settled, invoice_settled(tenant, invoice_id))
    closed = await case_when(client, tenant, invoice_id, lambda c: c["status"] == "closed")
    assert (closed["closed_on"], closed["close_reason"], closed["amount_open"], closed["days_overdue"]) == ("2026-12-12", "paid", "0.00", 0)

    # A later invoice of the same buyer is a marker: its case event is published after any
    # second DunningCaseClosed the duplicates could have caused.
    marker = str(uuid.uuid4())
    await publish_events(client, invoice_issued(tenant, marker))
    seen = await read_events(
        kafka_bootstrap, DUNNING.name, until=lambda s: bool(case_events(s, DunningCaseOpened, marker)), match=lambda e: e.tenant == tenant, timeout=40
    )
    [open_event] = case_events(seen, DunningCaseOpened, invoice_id)
    [close_event] = case_events(seen, DunningCaseClosed, invoice_id)
    assert open_event.data.amount_open == Money.of("1516.25", "USD")
    assert (close_event.data.reason, close_event.data.closed_on, close_event.data.account_id) == ("paid", date(2026, 12, 12), buyer)
    assert seen.index(open_event) < seen.index(close_event)
    after = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert (after["open_cases"], after["amount_open"]) == (1, [{"amount": "1516.25", "currency": "USD"}])


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_events_delivered_twice_change_nothing(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    invoice_id = str(uuid.uuid4())
    issued = invoice_issued(tenant, invoice_id)
    paid = payment_succeeded(tenant, invoice_id, "bank-1", "100.00")
    # Same event twice, then the same payment again under another event id: one payment.
    await publish_events(client, issued, issued)
    await publish_events(client, paid, paid, payment_succeeded(tenant, invoice_id, "bank-1", "100.00"))
    # A second, different payment after them on the same partition: once it shows, the
    # duplicates before it have been seen too.
    await publish_events(client, payment_succeeded(tenant, invoice_id, "bank-2", "0.25"))
    case = await case_when(client, tenant, invoice_id, lambda c: Decimal(c["amount_paid"]) >= Decimal("100.25"))
    assert (case["amount_paid"], case["amount_open"]) == ("100.25", "1416.00")
    cases = (await client.get("/v1/cases", headers=tenant_headers(tenant))).json()["items"]
    assert len(cases) == 1


async def stored(database_url: str, query: str, *args: Any) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query, *args) is not None
    finally:
        await conn.close()


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_payment_and_settlement_before_the_invoice(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str, settings: Settings) -> None:
    invoice_id = str(uuid.uuid4())
    await publish_events(client, payment_succeeded(tenant, invoice_id, "bank-1", "1516.25"), invoice_settled(tenant, invoice_id))

    async def both_held() -> bool:
        payment = await stored(settings.database_url, "SELECT 1 FROM dunning.case_payment WHERE invoice_id = $1", invoice_id)
        settlement = await stored(settings.database_url, "SELECT 1 FROM dunning.invoice_settlement WHERE invoice_id = $1", invoice_id)
        return payment and settlement

    await eventually(both_held)
    listed = (await client.get("/v1/cases", headers=tenant_headers(tenant))).json()["items"]
    assert listed == []

    await publish_events(client, invoice_issued(tenant, invoice_id))
    case = await case_when(client, tenant, invoice_id, lambda c: True)
    assert (case["status"], case["amount_paid"], case["amount_open"], case["closed_on"]) == ("closed", "1516.25", "0.00", "2026-12-12")
    seen = await read_events(
        kafka_bootstrap, DUNNING.name, until=lambda s: bool(case_events(s, DunningCaseClosed, invoice_id)), match=lambda e: e.tenant == tenant, timeout=40
    )
    [opened] = case_events(seen, DunningCaseOpened, invoice_id)
    assert str(opened.data.amount_open.amount) == "0.00"
    assert len(case_events(seen, DunningCaseClosed, invoice_id)) == 1


async def test_poison_is_dead_lettered_and_the_next_event_applied(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    poison = payment_succeeded(tenant, str(uuid.uuid4()), "bank-1", "10.00")
    # Known type, but the amount is a float: not a PaymentSucceeded anyone can trust.
    await publish_events(kafka_bootstrap, poison, raw_value=poison.data.model_dump_json().replace('"10.00"', "10.0").encode())
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id), payment_succeeded(tenant, invoice_id, "bank-2", "16.25"))
    await case_when(client, tenant, invoice_id, lambda c: c["amount_open"] == "1500.00")
    found = await dead_lettered(kafka_bootstrap, poison.id, service="dunning")
    assert "invalid billing.payment.succeeded.v1" in found["dlq_error"]


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_list_filters_pages_and_standing(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    early, late, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await publish_events(
        client,
        invoice_issued(tenant, late, due_on=date(2027, 1, 5), total="100.00"),
        invoice_issued(tenant, early),
        invoice_issued(tenant, other, customer="c-2", total="50.00"),
    )
    await case_when(client, tenant, other, lambda c: True)
    await case_when(client, tenant, late, lambda c: True)
    await case_when(client, tenant, early, lambda c: True)
    buyer = account_id(tenant, "c-1")

    first = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"account_id": buyer, "status": "open", "limit": 1})).json()
    second = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"account_id": buyer, "limit": 1, "cursor": first["next_cursor"]})).json()
    assert [c["invoice_id"] for c in first["items"] + second["items"]] == [early, late]
    assert second["next_cursor"] is None
    assert second["items"][0]["days_overdue"] == 0  # due 2027-01-05: not yet due

    closed = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"status": "closed"})).json()
    assert closed["items"] == []
    bad = await client.get("/v1/cases", headers=tenant_headers(tenant), params={"status": "paid"})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
    bad_cursor = await client.get("/v1/cases", headers=tenant_headers(tenant), params={"cursor": "x"})
    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (422, "invalid_cursor")

    standing = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert (standing["open_cases"], standing["overdue_cases"]) == (2, 1)
    assert standing["amount_open"] == [{"amount": "1616.25", "currency": "USD"}]
    assert standing["amount_overdue"] == [{"amount": "1516.25", "currency": "USD"}]
    # Another seller sees nothing of this account; an unknown account stands clear.
    elsewhere = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers("someone-else"))).json()
    assert (elsewhere["open_cases"], elsewhere["amount_open"]) == (0, [])


async def test_a_polled_batch_of_issued_invoices_opens_each_case_once(settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    """One polled batch (same buyer, so one partition, published while dunning is stopped): a plain
    invoice, one whose payment came first (closed as paid on issue), one already overdue (reaches
    its steps at once), the plain one again under another event id, and a poison (its total in
    another currency) that is dead-lettered alone. Replaying the batch changes nothing."""
    settings = settings.model_copy(update={"consumer_session_timeout_ms": REJOIN_SESSION_TIMEOUT_MS})  # served twice in one group
    warm, plain, paid_first, overdue = (str(uuid.uuid4()) for _ in range(4))
    async with serve(build(settings)) as client:
        await publish_events(kafka_bootstrap, invoice_issued(tenant, warm), payment_succeeded(tenant, paid_first, "bank-1", "1516.25"))
        await case_when(client, tenant, warm, lambda c: True)  # dunning's position on the buyer's partition is committed
        conn = await asyncpg.connect(settings.database_url)
        try:
            await eventually(lambda: conn.fetchval("SELECT count(*) FROM dunning.case_payment WHERE invoice_id = $1", paid_first))
        finally:
            await conn.close()
    bad = invoice_issued(tenant, str(uuid.uuid4()))
    poison = bad.model_copy(update={"data": bad.data.model_copy(update={"total": Money.of("1516.25", "EUR")})})
    batch = [
        invoice_issued(tenant, plain, total="200.00"),
        invoice_issued(tenant, paid_first),
        poison,
        invoice_issued(tenant, overdue, due_on=date(2026, 12, 1)),
        invoice_issued(tenant, plain, total="200.00"),
    ]
    await publish_events(kafka_bootstrap, *batch)
    app = build(settings)
    async with serve(app) as client:
        assert (await case_when(client, tenant, plain, lambda c: True))["amount_open"] == "200.00"
        closed = await case_when(client, tenant, paid_first, lambda c: c["status"] == "closed")
        assert (closed["close_reason"], closed["amount_paid"], closed["amount_open"]) == ("paid", "1516.25", "0.00")
        late = await case_when(client, tenant, overdue, lambda c: c["step"] is not None)
        assert late["days_overdue"] == 14
        found = await dead_lettered(kafka_bootstrap, poison.id, service="dunning")
        assert "is in EUR, not USD" in found["dlq_error"]
        await eventually(lambda: outbox_drained(app.state.runtime))
        before = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"limit": 500})).json()["items"]
        marker = str(uuid.uuid4())
        await publish_events(kafka_bootstrap, *batch, invoice_issued(tenant, marker))  # the batch again, then one behind it on the partition
        await case_when(client, tenant, marker, lambda c: True)
        await eventually(lambda: outbox_drained(app.state.runtime))
        after = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"limit": 500})).json()["items"]
        assert [c for c in after if c["invoice_id"] != marker] == before
    seen = await all_events(kafka_bootstrap, DUNNING.name, match=lambda e: e.tenant == tenant)
    for invoice_id in (warm, plain, paid_first, overdue):
        assert len(case_events(seen, DunningCaseOpened, invoice_id)) == 1, invoice_id
    assert len(case_events(seen, DunningCaseClosed, paid_first)) == 1
    assert case_events(seen, DunningCaseOpened, poison.data.invoice_id) == []


async def test_the_openapi_documents_the_case_list(client: httpx.AsyncClient) -> None:
    """GET /v1/cases is documented field by field (CasePage of CaseOut) and takes the partner's customer id."""
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/cases"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CasePage")
    assert {"account_id", "customer_id"} <= {p["name"] for p in operation["parameters"]}


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_standing_is_one_snapshot_while_a_payment_closes_the_case(client: httpx.AsyncClient, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standing is read in several statements. A payment that closes the case and reinstates
    the account, committed between them (here: right after the open cases are read), must not
    show half: the answer is the account before the payment (open and suspended) or after it
    (clear), never an open case on an account already reinstated."""
    invoice_id, buyer = str(uuid.uuid4()), account_id(tenant, "c-1")
    policy = await client.put("/v1/dunning-policy", headers=tenant_headers(tenant), json={"steps": [{"days_after_due": 3, "action": "suspend"}]})
    assert policy.status_code == 200, policy.text
    await publish_events(client, invoice_issued(tenant, invoice_id))  # ten days overdue: suspended on arrival
    before = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert (before["open_cases"], before["suspended"]) == (1, True)

    read_open_cases = case_repo.open_cases_of_account
    interleaved: list[str] = []

    async def then_a_payment(session: Any, of_tenant: str, account: str) -> list[Any]:
        found = await read_open_cases(session, of_tenant, account)
        if not interleaved:
            interleaved.append(invoice_id)
            # Another connection (the consumer's own transaction) commits the payment in full.
            await publish_events(client, payment_succeeded(tenant, invoice_id, "bank-1", "1516.25"))
        return found

    monkeypatch.setattr(case_repo, "open_cases_of_account", then_a_payment)
    during = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert interleaved == [invoice_id]
    assert (during["open_cases"], during["suspended"], during["suspended_by_case"]) == (1, True, case_id(invoice_id))
    assert during["current_case"]["status"] == "open"

    after = (await client.get(f"/v1/accounts/{buyer}/standing", headers=tenant_headers(tenant))).json()
    assert (after["open_cases"], after["suspended"], after["current_case"]) == (0, False, None)


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_an_invoice_totalled_in_another_currency_opens_no_case(client: httpx.AsyncClient, tenant: str) -> None:
    good, other = invoice_issued(tenant, str(uuid.uuid4())), invoice_issued(tenant, str(uuid.uuid4()))
    other = other.model_copy(update={"data": other.data.model_copy(update={"total": Money.of("1516.25", "EUR")})})
    delivery = await deliver(client, good, other)  # one buyer: one partition, one polled batch
    assert (delivery.applied, delivery.codes) == ([good.id], ["invoice_currency_mismatch"])
    cases = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"limit": 500})).json()["items"]
    assert [c["invoice_id"] for c in cases] == [good.data.invoice_id]
