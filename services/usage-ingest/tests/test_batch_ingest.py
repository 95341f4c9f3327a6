"""The batched create-only path (usage, orders, quantities): replays, mixed batches, atomic
batches, the audit row in the same transaction, the records budget, and the event contract of
envelopes built without validating again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_events import QuantityObserved, SubscriptionOrdered, UsageRecorded, derived_event_id, new_event, to_kafka
from billing_runtime.db import create_engine
from billing_runtime.testing import serve, tenant_headers
from usage_ingest.config import Settings
from usage_ingest.ingest import service
from usage_ingest.ingest.limits import RecordBudget
from usage_ingest.ingest.schemas import OrderIn, QuantityIn, UsageIn
from usage_ingest.main import build

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


def usage(rid: str, qty: str = "2.5", customer: str = "c-1") -> dict[str, Any]:
    return {"id": rid, "customer_id": customer, "product_code": "AZ-VM", "quantity": qty, "timestamp": "2026-10-12T10:00:00Z"}


@pytest.fixture
async def engine(migrated: str) -> AsyncIterator[AsyncEngine]:
    e = create_engine(migrated)
    yield e
    await e.dispose()


async def rows(engine: AsyncEngine, tenant: str) -> dict[str, int]:
    """What this tenant has in usage-ingest's tables: its usage events in the outbox (batch rows by
    their `billing_tenant` header, counting their events; single-event rows by `ce_tenant`)."""
    async with engine.connect() as conn:
        usage_rows = await conn.scalar(text("SELECT count(*) FROM usage_ingest.usage_record WHERE tenant = :t"), {"t": tenant})
        outbox_rows = await conn.scalar(
            text(
                "SELECT sum(CASE WHEN headers @> CAST(:b AS jsonb) THEN (headers->1->>1)::int ELSE 1 END) FROM usage_ingest.outbox "
                "WHERE event_type = :type AND (headers @> CAST(:h AS jsonb) OR headers @> CAST(:b AS jsonb))"
            ),
            {"type": UsageRecorded.event_type, "h": json.dumps([["ce_tenant", tenant]]), "b": json.dumps([["billing_tenant", tenant]])},
        )
        audit_rows = await conn.scalar(text("SELECT count(*) FROM usage_ingest.audit_log WHERE tenant = :t AND path = '/v1/usage'"), {"t": tenant})
    return {"usage": int(usage_rows or 0), "outbox": int(outbox_rows or 0), "audit": int(audit_rows or 0)}


async def messages(engine: AsyncEngine, tenant: str) -> list[list[str]]:
    """The tenant's usage messages in the outbox (batch rows), as the record ids of each, in order."""
    async with engine.connect() as conn:
        values = await conn.scalars(
            text("SELECT value FROM usage_ingest.outbox WHERE headers @> CAST(:b AS jsonb) ORDER BY id"), {"b": json.dumps([["billing_tenant", tenant]])}
        )
        return [[event["data"]["record_id"] for event in json.loads(value)] for value in values]


async def add_customer(client: httpx.AsyncClient, tenant: str, cid: str = "c-1") -> None:
    customer = {"id": cid, "name": "Contoso Dental", "billing_email": "ap@contoso.example", "country": "US", "currency": "USD"}
    r = await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [customer]})
    assert r.status_code == 200, r.text


async def test_replaying_a_batch_writes_nothing_and_returns_the_original_result(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    batch = {"records": [usage(f"u-{i}") for i in range(300)]}
    first = (await client.post("/v1/usage", headers=tenant_headers(tenant), json=batch)).json()
    after_first = await rows(engine, tenant)
    second = (await client.post("/v1/usage", headers=tenant_headers(tenant), json=batch)).json()
    after_second = await rows(engine, tenant)

    assert (first["accepted"], second["accepted"], second["duplicate"]) == (300, 0, 300)
    assert [r["result"] for r in second["results"]] == [r["result"] for r in first["results"]]
    assert {r["status"] for r in second["results"]} == {"duplicate"}
    assert (after_first["usage"], after_first["outbox"]) == (300, 300)
    # One customer's 300 events are one message (batched content mode), in the order posted.
    assert await messages(engine, tenant) == [[f"u-{i}" for i in range(300)]]
    # The replay wrote no record and no event; only its own audit row.
    assert (after_second["usage"], after_second["outbox"], after_second["audit"]) == (300, 300, after_first["audit"] + 1)


async def test_mixed_batch_of_new_and_seen_ids(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    seen = (await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": [usage(f"u-{i}") for i in range(0, 10)]})).json()
    mixed = [usage(f"u-{i}") for i in range(5, 15)]  # u-5..u-9 seen, u-10..u-14 new
    body = (await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": mixed})).json()

    assert (body["accepted"], body["duplicate"], body["conflict"], body["rejected"]) == (5, 5, 0, 0)
    assert [r["status"] for r in body["results"]] == ["duplicate"] * 5 + ["accepted"] * 5
    assert [r["index"] for r in body["results"]] == list(range(10))
    assert [r["result"] for r in body["results"][:5]] == [r["result"] for r in seen["results"][5:]]
    assert (await rows(engine, tenant))["usage"] == 15
    assert (await rows(engine, tenant))["outbox"] == 15
    assert await messages(engine, tenant) == [[f"u-{i}" for i in range(10)], [f"u-{i}" for i in range(10, 15)]]  # only the new ones


async def test_a_batch_of_several_customers_is_one_message_per_account(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant, "c-1")
    await add_customer(client, tenant, "c-2")
    records = [usage(f"u-{i}", customer="c-1" if i % 3 else "c-2") for i in range(12)]
    assert (await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": records})).json()["accepted"] == 12
    assert sorted(await messages(engine, tenant)) == sorted([[r["id"] for r in records if r["customer_id"] == c] for c in ("c-1", "c-2")])


async def test_an_atomic_batch_with_one_bad_record_is_refused_whole(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    records = [usage(f"u-{i}") for i in range(20)]
    records[13] = {**records[13], "quantity": 1.5}  # a float: rejected
    r = await client.post("/v1/usage?atomic=true", headers=tenant_headers(tenant), json={"records": records})

    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "batch_rejected"
    assert problem["errors"] == [{"index": 13, "id": "u-13", "code": "invalid_value", "field": "quantity", "message": problem["errors"][0]["message"]}]
    assert await rows(engine, tenant) == {"usage": 0, "outbox": 0, "audit": 0}
    # The same batch without the bad record goes through.
    fixed = (await client.post("/v1/usage?atomic=true", headers=tenant_headers(tenant), json={"records": records[:13] + records[14:]})).json()
    assert fixed["accepted"] == 19


async def test_an_atomic_batch_refuses_a_conflict_and_an_unknown_customer(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    assert (await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": [usage("u-1")]})).json()["accepted"] == 1
    records = [usage("u-1"), usage("u-2"), usage("u-1", qty="9"), usage("u-3", customer="nobody")]
    r = await client.post("/v1/usage?atomic=true", headers=tenant_headers(tenant), json={"records": records})
    assert r.status_code == 422
    assert [(e["index"], e["code"]) for e in r.json()["errors"]] == [(2, "id_conflict"), (3, "unknown_customer")]
    assert (await rows(engine, tenant))["usage"] == 1
    # Duplicates alone are no reason to refuse: posting again is how a partner retries.
    again = await client.post("/v1/usage?atomic=true", headers=tenant_headers(tenant), json={"records": [usage("u-1"), usage("u-2")]})
    assert (again.status_code, again.json()["accepted"], again.json()["duplicate"]) == (200, 1, 1)


async def test_the_audit_row_holds_the_request_and_the_answer(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    batch = {"records": [usage("u-1"), {**usage("u-2"), "colour": "red"}]}
    r = await client.post("/v1/usage", headers=tenant_headers(tenant), json=batch)
    async with engine.connect() as conn:
        audit = (await conn.execute(text("SELECT * FROM usage_ingest.audit_log WHERE tenant = :t AND path = '/v1/usage'"), {"t": tenant})).all()
    assert len(audit) == 1
    assert (audit[0].method, audit[0].status_code, audit[0].key_id) == ("POST", 200, "gateway")
    assert audit[0].request == batch
    assert audit[0].after == r.json()


async def test_malformed_batches_write_nothing(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    nul = json.dumps({"records": [{**usage("u-1"), "product_code": "AZ\u0000VM"}]}).encode()
    for body in (b"{not json", b"", b'{"records": [1]}', b'{"records": [], "x": 1}', json.dumps({"records": [usage("u-1")], "extra": 1}).encode(), nul):
        r = await client.post("/v1/usage", headers={**tenant_headers(tenant), "content-type": "application/json"}, content=body)
        # A NUL is refused at the edge, before the endpoint parses the batch, with its own code.
        expected = "nul_character" if body is nul else "validation_error"
        assert (r.status_code, r.json()["code"]) == (422, expected), body
    assert await rows(engine, tenant) == {"usage": 0, "outbox": 0, "audit": 0}


async def test_an_idempotency_key_replays_the_answer_and_audits_once(client: httpx.AsyncClient, tenant: str, engine: AsyncEngine) -> None:
    await add_customer(client, tenant)
    keyed = {**tenant_headers(tenant), "Idempotency-Key": "batch-1"}
    batch = {"records": [usage("u-1"), usage("u-2")]}
    first = await client.post("/v1/usage", headers=keyed, json=batch)
    again = await client.post("/v1/usage", headers=keyed, json=batch)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    assert await rows(engine, tenant) == {"usage": 2, "outbox": 2, "audit": 1}
    async with engine.connect() as conn:
        stored = await conn.scalar(text("SELECT status_code FROM usage_ingest.idempotency_key WHERE tenant = :t AND key = 'batch-1'"), {"t": tenant})
        audited_key = await conn.scalar(text("SELECT idempotency_key FROM usage_ingest.audit_log WHERE tenant = :t AND path = '/v1/usage'"), {"t": tenant})
    assert (stored, audited_key) == (200, "batch-1")


async def test_the_records_budget_is_per_key_and_counts_records(settings: Settings, tenant: str, engine: AsyncEngine) -> None:
    limited = settings.model_copy(update={"records_per_second": 0.001, "records_burst": 1000})
    async with serve(build(limited)) as client:
        await add_customer(client, tenant)
        first = await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": [usage(f"u-{i}") for i in range(1000)]})
        refused = await client.post("/v1/usage", headers=tenant_headers(tenant), json={"records": [usage("u-1000")]})
        other = await client.post("/v1/usage", headers=tenant_headers(tenant + "-b"), json={"records": [usage("u-1", customer="nobody")]})
    assert first.status_code == 200 and first.json()["accepted"] == 1000
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert other.status_code == 200  # another tenant's bucket
    assert (await rows(engine, tenant))["usage"] == 1000


def test_record_budget_refills_at_its_rate() -> None:
    clock = [0.0]
    budget = RecordBudget(rate=100.0, burst=1000, now=lambda: clock[0])
    assert budget.take("k", 1000) == 0
    assert budget.take("k", 10) == 1
    clock[0] = 0.1  # 10 records back
    assert budget.take("k", 10) == 0
    assert budget.take("k", 500) == 5
    assert budget.take("other", 1000) == 0


ORDER = {"id": "o-1", "customer_id": "c-1", "product_code": "M365", "quantity": "8", "start_date": "2026-10-14", "setup_exempt": True}
COUNT = {"id": "q-1", "customer_id": "c-1", "product_code": "AZ-VM", "observed_at": "2026-10-12T10:00:00+02:00", "source": "arm"}


@pytest.mark.parametrize(
    ("kind", "raw", "model"),
    [
        (service.USAGE, {**usage("u-1"), "cost": {"amount": "0.120", "currency": "EUR"}}, UsageRecorded),
        (service.USAGE, usage("u-2", qty="3"), UsageRecorded),
        (service.ORDERS, ORDER, SubscriptionOrdered),
        (
            service.QUANTITIES,
            {**COUNT, "items": [{"item_id": "vm-1", "state": "active"}]},
            QuantityObserved,
        ),
        (
            service.QUANTITIES,
            {"id": "q-2", "customer_id": "c-1", "product_code": "AZ-VM", "observed_at": "2026-10-12T10:00:00Z", "source": "arm", "quantity": "4"},
            QuantityObserved,
        ),
    ],
)
def test_envelopes_built_a_batch_at_a_time_match_the_contract(kind: service.Kind, raw: dict[str, Any], model: type[Any]) -> None:
    """Envelopes built a batch at a time put the same bytes on Kafka as `new_event` one at a time."""
    now = datetime(2026, 10, 12, 11, 0, 0, 123456, tzinfo=UTC)
    models: dict[type[BaseModel], type[BaseModel]] = {UsageIn: UsageIn, OrderIn: OrderIn, QuantityIn: QuantityIn}
    record = models[kind.model].model_validate(raw)
    row = kind.to_row("partner-x", record, "acc-1", now)
    fast = to_kafka(service.build_events(kind, "usage-ingest", "partner-x", now, [row])[0])
    data = model.model_validate(kind.to_event("partner-x", row))
    slow = to_kafka(new_event(data, source="usage-ingest", tenant="partner-x", event_id=fast.headers[1][1].decode(), subject=row[kind.id_column], time=now))
    assert fast == slow
    assert fast.headers[1][1].decode() == derived_event_id(kind.name, "partner-x", row[kind.id_column])
    assert model.model_validate_json(fast.value) == data
    if kind is service.USAGE and "cost" in raw:
        assert json.loads(fast.value)["cost"] == {"amount": "0.120", "currency": "EUR"}
        assert data.cost.amount == Decimal("0.120")


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (service.USAGE, {**usage("u-1"), "cost": {"amount": "0.120", "currency": "EUR"}}),
        (service.USAGE, {**usage("u-2"), "timestamp": "2026-10-12T12:00:00.5+02:00"}),
        (service.ORDERS, ORDER),
        (service.ORDERS, {**ORDER, "setup_exempt": False}),
        (service.QUANTITIES, {**COUNT, "items": [{"item_id": "vm-1", "state": "deleted"}]}),
    ],
)
def test_batch_hashes_equal_the_hash_of_records_stored_before(kind: service.Kind, raw: dict[str, Any]) -> None:
    """Records stored one at a time before batching stay duplicates (not conflicts) when posted again."""
    record = kind.model.model_validate(raw)
    assert service._hashes(kind, [record]) == [service.content_hash(record)]
