"""Events in, bill runs out: rating against a real PostgreSQL and a real Tansu broker.

Events are published to Kafka as usage-ingest would; the test polls the charges endpoint until
rating has applied them, closes October 2026 and reads PeriodClosed back from the topic."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy import text

from billing_events import (
    CustomerUpserted,
    QuantityObserved,
    SubscriptionCancelled,
    SubscriptionChanged,
    SubscriptionOrdered,
    UsageRecorded,
    account_id,
    new_event,
    subscription_id,
    to_kafka,
)
from billing_events.testing import make_customer
from billing_events.topics import PERIODS, USAGE
from billing_runtime.testing import all_events, dead_lettered, eventually, outbox_drained, read_events, tenant_headers

from .conftest import at, published

T = TypeVar("T")
ORDERED_AT = datetime(2026, 8, 1, 9, 0, tzinfo=UTC)


def customer(tenant: str, ext: str, currency: str = "USD", revision: int = 1, name: str = "Contoso Dental") -> CustomerUpserted:
    return make_customer(tenant, ext, name=name, country="US", currency=currency, revision=revision)


def order(tenant: str, oid: str, ext: str, product: str, quantity: str, start: date) -> SubscriptionOrdered:
    return SubscriptionOrdered(
        subscription_id=subscription_id(tenant, oid),
        order_id=oid,
        account_id=account_id(tenant, ext),
        partner_id=tenant,
        product_code=product,
        quantity=Decimal(quantity),
        start_on=start,
        ordered_at=ORDERED_AT,
    )


def usage(tenant: str, rid: str, ext: str, product: str, quantity: str, when: datetime) -> UsageRecorded:
    return UsageRecorded(
        record_id=rid,
        account_id=account_id(tenant, ext),
        partner_id=tenant,
        product_code=product,
        quantity=Decimal(quantity),
        occurred_at=when,
    )


def count(tenant: str, oid: str, ext: str, product: str, quantity: str, when: datetime) -> QuantityObserved:
    return QuantityObserved(
        observation_id=oid,
        account_id=account_id(tenant, ext),
        partner_id=tenant,
        product_code=product,
        observed_at=when,
        source="directory",
        quantity=Decimal(quantity),
    )


async def put_products(client: httpx.AsyncClient, tenant: str) -> None:
    for code, name, price, currency, rule in (
        ("EML-HST", "Hosted email", "6.75", "USD", "contracted"),
        ("BKP-GB", "Backup storage per GB", "0.10", "USD", "usage_sum"),
        ("USR-SUP", "User support", "35.00", "USD", "latest"),
        ("M365-BP", "Microsoft 365 Business Premium", "20.60", "EUR", "contracted"),
    ):
        body = {
            "name": name,
            "unit_price": price,
            "currency": currency,
            "description": None,
            "category": None,
            "quantity_rule": rule,
        }
        r = await client.put(f"/v1/products/{code}", headers=tenant_headers(tenant), json=body)
        assert r.status_code == 200, r.text


async def charges(client: httpx.AsyncClient, tenant: str, ext: str, period: str = "2026-10") -> dict[str, Any]:
    r = await client.get(f"/v1/accounts/{account_id(tenant, ext)}/charges?period={period}", headers=tenant_headers(tenant))
    return r.json() if r.status_code == 200 else {}


def amounts(charge: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {line["product_code"]: (line["quantity"], line["amount"]["amount"]) for line in charge.get("lines", [])}


async def test_a_month_rated_closed_once_and_read_back_to_the_cent(
    client: httpx.AsyncClient, app: FastAPI, producer: AIOKafkaProducer, tenant: str, kafka_bootstrap: str
) -> None:
    await put_products(client, tenant)
    # A later revision first, then the older one arriving late: the older one must change nothing.
    await published(producer, tenant, customer(tenant, "c-1", "USD", revision=2))
    await published(producer, tenant, customer(tenant, "c-1", "EUR", revision=1))
    await published(producer, tenant, customer(tenant, "c-2", "USD"))

    sub = subscription_id(tenant, "o-1")
    await published(producer, tenant, order(tenant, "o-1", "c-1", "EML-HST", "11", date(2026, 9, 1)))
    await published(
        producer,
        tenant,
        SubscriptionChanged(
            subscription_id=sub,
            order_id="o-1-up",
            account_id=account_id(tenant, "c-1"),
            partner_id=tenant,
            quantity=Decimal("12"),
            requested_at=at("2026-10-18T10:00:00"),
            effective_on=date(2026, 10, 20),
        ),
    )
    await published(
        producer,
        tenant,
        SubscriptionChanged(
            subscription_id=sub,
            order_id="o-1-up2",
            account_id=account_id(tenant, "c-1"),
            partner_id=tenant,
            quantity=Decimal("20"),
            requested_at=at("2026-11-02T10:00:00"),
            effective_on=date(2026, 11, 5),
        ),
    )
    await published(producer, tenant, order(tenant, "o-2", "c-2", "EML-HST", "8", date(2026, 8, 1)))
    await published(
        producer,
        tenant,
        SubscriptionCancelled(
            subscription_id=subscription_id(tenant, "o-2"),
            order_id="o-2-cancel",
            account_id=account_id(tenant, "c-2"),
            partner_id=tenant,
            requested_at=at("2026-09-01T10:00:00"),
            effective_on=date(2026, 9, 30),
        ),
    )
    await published(producer, tenant, order(tenant, "o-3", "c-2", "EML-HST", "3", date(2026, 10, 31)))
    await published(producer, tenant, order(tenant, "o-4", "c-2", "M365-BP", "5", date(2026, 10, 1)))  # EUR price, USD buyer

    for rid, qty, when in (
        ("u-in-1", "1.5", at("2026-10-01T00:00:00")),
        ("u-in-2", "2.5", at("2026-10-31T23:59:59")),
        ("u-before", "100", at("2026-09-30T23:59:59")),
        ("u-after", "100", at("2026-11-01T00:00:00")),
    ):
        await published(producer, tenant, usage(tenant, rid, "c-1", "BKP-GB", qty, when))
    await published(producer, tenant, usage(tenant, "u-unknown", "c-1", "NOT-IN-CATALOGUE", "1", at("2026-10-10T00:00:00")))
    for oid, qty, observed in (
        ("q-1", "14", "2026-10-01T23:00:00"),
        ("q-2", "16", "2026-10-15T23:00:00"),
        ("q-3", "15", "2026-10-30T23:00:00"),
        ("q-nov", "99", "2026-11-01T08:00:00"),
    ):
        await published(producer, tenant, count(tenant, oid, "c-1", "USR-SUP", qty, at(observed)))

    want_c1 = {"EML-HST": ("12", "81.00"), "BKP-GB": ("4.0", "0.400"), "USR-SUP": ("15", "525.00")}
    want_c2 = {"EML-HST": ("3", "20.25")}

    async def seen_all() -> bool:
        c1, c2 = await charges(client, tenant, "c-1"), await charges(client, tenant, "c-2")
        return amounts(c1) == want_c1 and amounts(c2) == want_c2 and len(c1["unrated"]) == 1 and len(c2["unrated"]) == 1

    await eventually(seen_all, "rating to apply the month")
    live = await charges(client, tenant, "c-1")
    assert live["total"] == {"amount": "606.400", "currency": "USD"}
    assert live["bill_run_id"] is None and live["currency"] == "USD"

    first = await client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={"period": "2026-10"})
    assert first.status_code == 201, first.text
    run = first.json()
    assert {k: run[k] for k in ("seller_id", "period", "period_start", "period_end", "created", "buyers", "lines")} == {
        "seller_id": tenant,
        "period": "2026-10",
        "period_start": "2026-10-01",
        "period_end": "2026-10-31",
        "created": True,
        "buyers": 2,
        "lines": 4,
    }
    assert sorted((u["account_id"], u["product_code"], u["reason"]) for u in run["unrated"]) == sorted(
        [
            (account_id(tenant, "c-1"), "NOT-IN-CATALOGUE", "unknown_product"),
            (account_id(tenant, "c-2"), "M365-BP", "currency_mismatch"),
        ]
    )

    again = await client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={"period": "2026-10"})
    assert again.status_code == 200
    assert again.json() == {**run, "created": False}
    fetched = await client.get(f"/v1/bill-runs/{run['bill_run_id']}", headers=tenant_headers(tenant))
    assert fetched.json() == {**run, "created": False}

    closed = await read_events(kafka_bootstrap, PERIODS.name, until=lambda s: len(s) >= 2, match=lambda e: e.tenant == tenant)
    by_buyer = {e.data.buyer_account_id: e for e in closed}
    c1 = by_buyer[account_id(tenant, "c-1")].data
    assert (c1.bill_run_id, c1.seller_id, c1.currency, c1.period_start, c1.period_end) == (
        run["bill_run_id"],
        tenant,
        "USD",
        date(2026, 10, 1),
        date(2026, 10, 31),
    )
    assert {line.product_code: (line.quantity, line.unit_price.amount, line.amount.amount) for line in c1.lines} == {
        "BKP-GB": (Decimal("4.0"), Decimal("0.10"), Decimal("0.400")),
        "EML-HST": (Decimal("12"), Decimal("6.75"), Decimal("81.00")),
        "USR-SUP": (Decimal("15"), Decimal("35.00"), Decimal("525.00")),
    }
    assert sum(line.amount.amount for line in c1.lines).quantize(Decimal("0.01")) == Decimal("606.40")
    assert all(line.description and line.end_customer_id is None for line in c1.lines)
    c2 = by_buyer[account_id(tenant, "c-2")].data
    assert [(line.product_code, line.amount.amount) for line in c2.lines] == [("EML-HST", Decimal("20.25"))]

    # A bill run twice: still exactly one PeriodClosed per buyer on the topic (once rating's outbox
    # is drained, everything it will publish of these runs is there).
    await eventually(lambda: outbox_drained(app.state.runtime), "rating's outbox drained")
    everything = await all_events(kafka_bootstrap, PERIODS.name, match=lambda e: e.tenant == tenant)
    assert sorted(e.data.buyer_account_id for e in everything) == sorted(by_buyer)
    assert len({e.id for e in everything}) == 2

    after = await charges(client, tenant, "c-1")
    assert after["bill_run_id"] == run["bill_run_id"]
    # The records the run billed carry its id, so that no later run bills them again.
    async with app.state.runtime.engine.connect() as conn:
        usage_marked = await conn.execute(
            text("SELECT record_id FROM rating.usage_record WHERE seller_id = :t AND bill_run_id = :r ORDER BY record_id"),
            {"t": tenant, "r": run["bill_run_id"]},
        )
        counts_marked = await conn.execute(
            text("SELECT observation_id FROM rating.quantity_observation WHERE seller_id = :t AND bill_run_id = :r"),
            {"t": tenant, "r": run["bill_run_id"]},
        )
        assert [r[0] for r in usage_marked] == ["u-in-1", "u-in-2"]
        assert [r[0] for r in counts_marked] == ["q-3"]


async def test_only_an_ended_period_can_be_closed(client: httpx.AsyncClient, tenant: str) -> None:
    r = await client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={"period": "2026-11"})
    assert r.status_code == 409
    assert r.json()["code"] == "period_not_ended"
    for bad in ("2026-13", "October", "2026-10-01"):
        r = await client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={"period": bad})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_period"), bad
    r = await client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await client.get(f"/v1/bill-runs/{uuid.uuid4()}", headers=tenant_headers(tenant))
    assert (r.status_code, r.json()["code"]) == (404, "bill_run_not_found")
    r = await client.get(f"/v1/accounts/{account_id(tenant, 'nobody')}/charges?period=2026-10", headers=tenant_headers(tenant))
    assert (r.status_code, r.json()["code"]) == (404, "account_not_found")


async def test_concurrent_bill_runs_emit_once(app: FastAPI, client: httpx.AsyncClient, producer: AIOKafkaProducer, tenant: str, kafka_bootstrap: str) -> None:
    await put_products(client, tenant)
    await published(producer, tenant, customer(tenant, "c-1"))
    await published(producer, tenant, order(tenant, "o-1", "c-1", "EML-HST", "2", date(2026, 10, 1)))
    await eventually(lambda: _has_lines(client, tenant, "c-1"), "the order to be applied")

    post = lambda: client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={"period": "2026-10"})  # noqa: E731
    responses = await asyncio.gather(*(post() for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["bill_run_id"] for r in responses}) == 1
    assert all(r.json()["lines"] == 1 for r in responses)
    await eventually(lambda: outbox_drained(app.state.runtime), "rating's outbox drained")
    everything = await all_events(kafka_bootstrap, PERIODS.name, match=lambda e: e.tenant == tenant)
    assert len(everything) == 1
    assert everything[0].data.lines[0].amount.amount == Decimal("13.50")


async def _has_lines(client: httpx.AsyncClient, tenant: str, ext: str) -> bool:
    return bool((await charges(client, tenant, ext)).get("lines"))


async def test_a_duplicate_delivery_changes_nothing(client: httpx.AsyncClient, producer: AIOKafkaProducer, tenant: str) -> None:
    await put_products(client, tenant)
    await published(producer, tenant, customer(tenant, "c-1"))
    record = usage(tenant, "u-1", "c-1", "BKP-GB", "7", at("2026-10-05T00:00:00"))
    sent = await published(producer, tenant, record)
    await published(producer, tenant, record, event_id=sent.id)  # the same event, redelivered
    await published(producer, tenant, record)  # the same record under a new event id (a replay upstream)
    # Same account, same partition: once this one shows, the duplicates before it were applied.
    await published(producer, tenant, count(tenant, "q-1", "c-1", "USR-SUP", "2", at("2026-10-06T00:00:00")))

    async def settled() -> dict[str, tuple[str, str]] | None:
        found = amounts(await charges(client, tenant, "c-1"))
        return found if "USR-SUP" in found else None

    assert await eventually(settled, "the marker count") == {"BKP-GB": ("7", "0.70"), "USR-SUP": ("2", "70.00")}


async def test_poison_events_are_dead_lettered_and_the_next_applied(
    client: httpx.AsyncClient, producer: AIOKafkaProducer, tenant: str, kafka_bootstrap: str
) -> None:
    await put_products(client, tenant)
    await published(producer, tenant, customer(tenant, "c-1"))
    key = account_id(tenant, "c-1").encode()

    # Invalid data under a known type: a float quantity and no occurred_at.
    poison_id = str(uuid.uuid4())
    good = to_kafka(new_event(usage(tenant, "u-ok", "c-1", "BKP-GB", "3", at("2026-10-05T00:00:00")), source="t", tenant=tenant))
    poison_headers = [(k, poison_id.encode() if k == "ce_id" else v) for k, v in good.headers]
    await producer.send_and_wait(USAGE.name, key=key, headers=poison_headers, value=b'{"record_id": "u-bad", "quantity": 1.5}')
    # Valid data naming another partner than the envelope's tenant: refused by the runtime.
    elsewhere = usage(f"{tenant}-other", "u-foreign", "c-1", "BKP-GB", "50", at("2026-10-05T00:00:00"))
    foreign = await published(producer, tenant, elsewhere)
    await producer.send_and_wait(good.topic, key=good.key, headers=good.headers, value=good.value)

    async def applied() -> dict[str, tuple[str, str]] | None:
        found = amounts(await charges(client, tenant, "c-1"))
        return found or None

    assert await eventually(applied, "the good event after the poison") == {"BKP-GB": ("3", "0.30")}
    dead = {event_id: await dead_lettered(kafka_bootstrap, event_id) for event_id in (poison_id, foreign.id)}
    assert all(h["dlq_service"] == "rating" for h in dead.values())
    assert "ForeignTenant" in dead[foreign.id]["dlq_error"] and dead[foreign.id]["dlq_code"] == "foreign_tenant"


async def test_a_sellers_bill_runs_are_listed_newest_first_a_page_at_a_time(client: httpx.AsyncClient, tenant: str) -> None:
    runs = {}
    for period in ("2026-07", "2026-08", "2026-09"):
        r = await client.post("/v1/bill-runs", headers=tenant_headers(tenant), json={"period": period})
        assert r.status_code == 201, r.text
        runs[period] = {**r.json(), "created": False}

    listed = await client.get("/v1/bill-runs", headers=tenant_headers(tenant))
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"items": [runs["2026-09"], runs["2026-08"], runs["2026-07"]], "limit": 50, "next_cursor": None}

    first = (await client.get("/v1/bill-runs?limit=2", headers=tenant_headers(tenant))).json()
    assert [run["period"] for run in first["items"]] == ["2026-09", "2026-08"] and first["next_cursor"]
    rest = (await client.get(f"/v1/bill-runs?limit=2&cursor={first['next_cursor']}", headers=tenant_headers(tenant))).json()
    assert (rest["items"], rest["next_cursor"]) == ([runs["2026-07"]], None)

    ranged = (await client.get("/v1/bill-runs?period_from=2026-08&period_to=2026-08", headers=tenant_headers(tenant))).json()
    assert ranged["items"] == [runs["2026-08"]]
    assert (await client.get("/v1/bill-runs?tier=wholesale", headers=tenant_headers(tenant))).json()["items"] == []
    # Another seller's runs are not listed.
    assert (await client.get("/v1/bill-runs", headers=tenant_headers(f"other-{uuid.uuid4()}"))).json()["items"] == []

    for query, code in (
        ("limit=201", "validation_error"),
        ("cursor=not-one-of-ours", "invalid_cursor"),
        ("period_from=2026-13", "invalid_period"),
        ("tier=partner", "validation_error"),
    ):
        r = await client.get(f"/v1/bill-runs?{query}", headers=tenant_headers(tenant))
        assert (r.status_code, r.json()["code"]) == (422, code), query
