"""The edge of every service, on a toy service with a real PostgreSQL and a real Tansu broker:
the API key table as the registry's source of truth (keys survive a broker that lost its topic),
body limits (413), pre-authentication rate limits per client address (429), input no service can
take (422 naming the field), and scopes declared next to the route."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import text

from billing_runtime.api import Admin, Read, Tenant, Write
from billing_runtime.auth import KeyRecord, KeyStore, api_key_table, ensure_registry, generate_key, hash_secret, issue, publish, revoke
from billing_runtime.config import CommonSettings
from billing_runtime.conventions import add_http_tables, install_http_conventions, scope_matrix
from billing_runtime.db import create_engine, schema_metadata
from billing_runtime.edge import InvalidInput, check_json, check_path, check_query
from billing_runtime.embedded import TansuBroker, free_port
from billing_runtime.kafka import ensure_topics
from billing_runtime.service import ServiceRuntime, create_app, runtime_tables
from billing_runtime.testing import api_key_headers, eventually, serve

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


class ItemIn(BaseModel):
    name: str
    amount: float | None = None


def edge_router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/items/{item_id}", dependencies=[Read])
    async def get_item(item_id: str, tenant: Tenant) -> dict[str, str]:
        return {"id": item_id, "tenant": tenant}

    @router.get("/items", dependencies=[Read])
    async def list_items(tenant: Tenant, q: str | None = None) -> dict[str, Any]:
        return {"q": q}

    @router.post("/items", dependencies=[Write])
    async def post_item(body: ItemIn, tenant: Tenant) -> dict[str, Any]:
        return {"name": body.name}

    @router.post("/items/preview", dependencies=[Read])
    async def preview(body: ItemIn, tenant: Tenant) -> dict[str, Any]:
        return {"preview": body.name}

    @router.put("/credentials", dependencies=[Admin])
    async def put_credentials(body: ItemIn, tenant: Tenant) -> dict[str, str]:
        return {"set_for": tenant}

    @router.post("/uploads")
    async def upload(request: Request, tenant: Tenant) -> dict[str, int]:
        return {"size": len(await request.body())}

    @router.get("/shared/{token}")
    async def shared(token: str) -> dict[str, str]:
        return {"token": token}

    @router.post("/webhooks/{tenant}")
    async def webhook(tenant: str, request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return router


def toy_app(database_url: str, bootstrap: str, schema: str, **settings: Any) -> FastAPI:
    metadata = schema_metadata(schema)
    runtime_tables(metadata)
    common = CommonSettings(database_url=database_url, kafka_bootstrap_servers=bootstrap, clock_fixed_at=NOW, auth_mode="api_key", **settings)
    app = create_app(ServiceRuntime(f"edge-{schema}", common, metadata), [edge_router()], title="edge toy")
    install_http_conventions(app)
    return app


@pytest.fixture
async def schema(database_url: str) -> str:
    name = f"edge_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, pool_size=1)
    metadata = schema_metadata(name)
    runtime_tables(metadata)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{name}"'))
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(lambda sync: add_http_tables(Operations(MigrationContext.configure(sync)), name))
    finally:
        await engine.dispose()
    return name


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Any]:
    e = create_engine(database_url, pool_size=2)
    yield e
    await e.dispose()


@pytest.fixture
def empty_broker(tmp_path: Path) -> Iterator[str]:
    """A broker that lost everything: a fresh memory-only Tansu with empty topics."""
    broker = TansuBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    try:
        asyncio.run(ensure_topics(broker.bootstrap))
        yield broker.bootstrap
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def client_from(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of an app already being served (the ASGI transport names its address)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


# --- the key registry -------------------------------------------------------------------------


async def test_keys_survive_a_broker_that_lost_its_topic(database_url: str, kafka_bootstrap: str, empty_broker: str, schema: str, engine: Any) -> None:
    tenant = f"dur-{uuid.uuid4().hex[:8]}"
    key = await issue(engine, kafka_bootstrap, tenant, "write", label="durable", now=NOW)
    async with engine.connect() as conn:
        row = (await conn.execute(api_key_table.select().where(api_key_table.c.key_id == key.key_id))).one()
    assert (row.tenant, row.scope, row.label) == (tenant, "write", "durable")
    assert key.key.rsplit("_", 1)[1] not in repr(tuple(row))  # the hash, never the secret

    # The service's broker has never seen this key (its topic is empty): the table is enough.
    app = toy_app(database_url, empty_broker, schema, api_keys_refresh_seconds=0.2)
    async with serve(app) as client:
        r = await client.get("/v1/items/i1", headers=api_key_headers(key.key))
        assert (r.status_code, r.json()) == (200, {"id": "i1", "tenant": tenant})
        # A revocation the topic never carries (announced on the other broker) arrives by the table.
        await revoke(engine, kafka_bootstrap, key.key_id, reason="rotated", now=NOW + timedelta(hours=1))

        async def refused() -> httpx.Response | None:
            r = await client.get("/v1/items/i1", headers=api_key_headers(key.key))
            return r if r.status_code == 401 else None

        r = await eventually(refused, "the revocation to arrive by the table", 10)
        assert (r.status_code, r.json()["code"]) == (401, "api_key_revoked")


async def test_revoking_an_unknown_key_is_refused_and_issue_is_idempotent(kafka_bootstrap: str, engine: Any) -> None:
    with pytest.raises(LookupError):
        await revoke(engine, kafka_bootstrap, "k" + "e" * 16, reason=None, now=NOW)
    key = await issue(engine, kafka_bootstrap, f"idm-{uuid.uuid4().hex[:8]}", "read", label=None, now=NOW)
    first = await revoke(engine, kafka_bootstrap, key.key_id, reason="one", now=NOW)
    second = await revoke(engine, kafka_bootstrap, key.key_id, reason="two", now=NOW + timedelta(days=1))
    assert first.revoked_at == second.revoked_at == NOW  # the first revocation stands
    async with engine.begin() as conn:
        await ensure_registry(conn)  # again: changes nothing


def test_the_table_wins_over_a_topic_event_for_the_same_key_id() -> None:
    real = generate_key("tenant-a", "read")
    forged = generate_key("tenant-b", "admin")
    store = KeyStore()
    # Someone who can write the topic announced the real key's id with their own secret and scope.
    store.keys[real.key_id] = KeyRecord(real.key_id, "tenant-b", "admin", hash_secret(forged.key.rsplit("_", 1)[1]), None, NOW)
    store.merge([KeyRecord(real.key_id, "tenant-a", "read", hash_secret(real.key.rsplit("_", 1)[1]), None, NOW)])
    assert (store.verify(real.key).tenant, store.verify(real.key).scope) == ("tenant-a", "read")
    with pytest.raises(Exception, match="not valid"):
        store.verify(f"bk_live_{real.key_id}_{forged.key.rsplit('_', 1)[1]}")


# --- limits -----------------------------------------------------------------------------------


@pytest.fixture
async def edge(database_url: str, kafka_bootstrap: str, schema: str, engine: Any) -> AsyncIterator[dict[str, Any]]:
    tenant = f"edg-{uuid.uuid4().hex[:8]}"
    keys = {scope: (await issue(engine, kafka_bootstrap, tenant, scope, label=None, now=NOW)).key for scope in ("read", "write", "admin")}
    app = toy_app(
        database_url,
        kafka_bootstrap,
        schema,
        body_limit_bytes=1000,
        body_limits={"/v1/uploads": 5000},
        public_rate_limit_per_second=0.01,
        public_rate_limit_burst=3,
        auth_failure_rate_limit_per_second=0.01,
        auth_failure_rate_limit_burst=3,
    )
    async with serve(app) as client:
        yield {"app": app, "client": client, "tenant": tenant, **keys}


async def test_a_body_over_its_limit_is_413_before_it_is_read(edge: dict[str, Any]) -> None:
    client, key = edge["client"], edge["write"]
    ok = await client.post("/v1/items", json={"name": "x" * 900}, headers=api_key_headers(key))
    assert ok.status_code == 200
    big = await client.post("/v1/items", json={"name": "x" * 1100}, headers=api_key_headers(key))
    assert (big.status_code, big.headers["content-type"], big.json()["code"]) == (413, "application/problem+json", "body_too_large")
    assert big.json()["limit"] == 1000

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused as it grows past the limit
        for _ in range(20):
            yield b"x" * 100

    streamed = await client.post("/v1/items", content=chunks(), headers={**api_key_headers(key), "Content-Type": "application/json"})
    assert (streamed.status_code, streamed.json()["code"]) == (413, "body_too_large")
    # A larger limit for one prefix (as payments has for bank statements).
    upload = await client.post("/v1/uploads", content=b"y" * 4000, headers=api_key_headers(key))
    assert (upload.status_code, upload.json()) == (200, {"size": 4000})
    assert (await client.post("/v1/uploads", content=b"y" * 6000, headers=api_key_headers(key))).status_code == 413
    # Webhooks and shared links too, before any signature or token is looked at.
    hook = await client.post(f"/v1/webhooks/{edge['tenant']}", content=b"z" * 2000)
    assert (hook.status_code, hook.json()["code"]) == (413, "body_too_large")


async def test_refused_keys_are_rate_limited_per_address(edge: dict[str, Any]) -> None:
    app, good = edge["app"], edge["read"]
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    async with client_from(app, "10.9.0.1") as attacker, client_from(app, "10.9.0.2") as neighbour:
        statuses = [(await attacker.get("/v1/items", headers=api_key_headers(bad))).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        blocked = await attacker.get("/v1/items", headers=api_key_headers(good))  # the address is blocked, not the key
        assert (blocked.status_code, blocked.json()["code"]) == (429, "auth_rate_limited")
        assert int(blocked.headers["retry-after"]) >= 1
        assert (await neighbour.get("/v1/items", headers=api_key_headers(good))).status_code == 200
        # A request without a key is no refused key: it does not count.
        for _ in range(5):
            assert (await neighbour.get("/v1/items")).status_code == 401


async def test_shared_links_and_webhooks_are_rate_limited_per_address(edge: dict[str, Any]) -> None:
    app = edge["app"]
    async with client_from(app, "10.9.1.1") as one, client_from(app, "10.9.1.2") as other:
        statuses = [(await one.get(f"/v1/shared/t{i}")).status_code for i in range(4)]
        assert statuses == [200, 200, 200, 429]
        hook = await one.post(f"/v1/webhooks/{edge['tenant']}", content=b"{}")
        assert (hook.status_code, hook.json()["code"]) == (429, "rate_limited") and int(hook.headers["retry-after"]) >= 1
        assert (await other.post(f"/v1/webhooks/{edge['tenant']}", content=b"{}")).status_code == 200


async def test_addresses_exempt_from_the_public_limit_fetch_shared_links_unlimited(database_url: str, kafka_bootstrap: str, schema: str) -> None:
    """PUBLIC_RATE_LIMIT_EXEMPT: the platform's own callers (notify attaching a month close's PDFs
    through their shared links) are not held to the per-address limit; every other address is."""
    app = toy_app(database_url, kafka_bootstrap, schema, public_rate_limit_per_second=0.01, public_rate_limit_burst=3, public_rate_limit_exempt=["10.9.2.0/24"])
    async with serve(app):
        async with client_from(app, "10.9.2.7") as notify, client_from(app, "10.9.3.1") as outsider, client_from(app, "unknown") as unnamed:
            assert [(await notify.get(f"/v1/shared/t{i}")).status_code for i in range(6)] == [200] * 6
            assert [(await outsider.get(f"/v1/shared/t{i}")).status_code for i in range(4)] == [200, 200, 200, 429]
            assert [(await unnamed.get(f"/v1/shared/t{i}")).status_code for i in range(4)] == [200, 200, 200, 429]


# --- input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b'{"name": "a\\u0000b"}', "nul_character", "name"),
        (b'{"name": "\\ud800"}', "invalid_unicode", "name"),
        (b'{"name": "x\xed\xa0\x80"}', "invalid_unicode", "name"),
        (b'{"records": [{"name": "ok"}, {"name": "bad\\u0000"}]}', "nul_character", "records.1.name"),
        (b'{"name\\u0000": "x"}', "nul_character", "<key>"),
        (b'{"name": "x", "amount": NaN}', "number_not_finite", "amount"),
        (b'{"name": "x", "amount": -Infinity}', "number_not_finite", "amount"),
        (b'{"name": "x", "amount": 1e400}', "number_out_of_range", "amount"),
        (b'{"name": "x", "amount": 1000000000000000000000000000000}', "number_out_of_range", "amount"),
        (b'{"name": "x", "amount": 1.00000000000000000000000000001}', "number_too_precise", "amount"),
        (b'{"name": "x", "amount": 1e-400}', "number_too_precise", "amount"),
        (b'{"name": "x", "amount": 123456789012345.12345678901234}', "number_too_precise", "amount"),  # 29 digits, no run of 16
        (b'{"name": "x", "amount": 2E+17 }', "number_out_of_range", "amount"),
        (b'{"period": "9999-12"}', "date_out_of_range", "period"),
        (b'{"quarter": "0000-Q1"}', "date_out_of_range", "quarter"),
        (b'{"records": [{"timestamp": "2026-10-12T10:00:00Z"}, {"timestamp": "9999-12-31T23:59:59-23:59"}]}', "date_out_of_range", "records.1.timestamp"),
        (b'{"start_date": "1899-12-31"}', "date_out_of_range", "start_date"),
        (b'{"currency": "ZZZ"}', "unknown_currency", "currency"),
        (
            b'{"records": [{"cost": {"amount": "1", "currency": "EUR"}}, {"cost": {"amount": "1", "currency": "XXX"}}]}',
            "unknown_currency",
            "records.1.cost.currency",
        ),
    ],
)
def test_json_input_no_service_can_take(body: bytes, code: str, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_json(body, max_integer_digits=15, max_significant_digits=28)
    assert (refused.value.code, refused.value.field) == (code, field)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "plain", "amount": 12.5}',
        b'{"name": "\\ud83d\\ude00 emoji as a surrogate pair", "amount": 999999999999999}',
        '{"name": "caf\u00e9 \U0001f600", "amount": 1.5e3}'.encode(),
        b'{"id": "12345678901234567890123 is a string, not a number"}',
        b'{"amount": 0.0000000000000000000000000001}',
        b'{"period": "2200-12", "since": "1900-01-01T00:00:00+23:59", "quarter": "2026-Q4", "currency": "JPY", "id": "0001-anything"}',
        b'{"id": "2999-is-an-id-not-a-date-x"}',
        b'{"data": {"object": {"currency": "eur", "amount": 16359}}}',  # Stripe writes codes in lowercase
        b"not json at all",
    ],
)
def test_json_input_that_passes(body: bytes) -> None:
    check_json(body, max_integer_digits=15, max_significant_digits=28)


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        (b"period=9999-12", "date_out_of_range", "query.period"),
        (b"quarter=0000-Q1", "date_out_of_range", "query.quarter"),
        (b"currency=ZZZ", "unknown_currency", "query.currency"),
    ],
)
def test_query_input_no_service_can_take(query: bytes, code: str, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_query(query)
    assert (refused.value.code, refused.value.field) == (code, field)
    check_query(b"period=2026-11&quarter=2026-Q4&currency=EUR")
    with pytest.raises(InvalidInput, match="9999"):
        check_path("/v1/periods/9999-12", None)


async def test_bad_input_is_422_naming_the_field_over_http(edge: dict[str, Any]) -> None:
    client, key = edge["client"], edge["write"]
    cases = [
        ("GET", "/v1/items/a%00b", None, "nul_character", "path"),
        ("GET", "/v1/items?q=a%00b", None, "nul_character", "query.q"),
        ("GET", "/v1/items?q=%ff", None, "invalid_unicode", "query"),
        ("POST", "/v1/items", b'{"name": "n\\u0000"}', "nul_character", "name"),
        ("POST", "/v1/items", b'{"name": "n", "amount": NaN}', "number_not_finite", "amount"),
        ("POST", "/v1/items", b'{"name": "n", "amount": 1e400}', "number_out_of_range", "amount"),
        ("GET", "/v1/shared/%00", None, "nul_character", "path"),
    ]
    for method, path, body, code, field in cases:
        r = await client.request(method, path, content=body, headers={**api_key_headers(key), "Content-Type": "application/json"})
        assert (r.status_code, r.headers["content-type"], r.json()["code"], r.json()["field"]) == (422, "application/problem+json", code, field), path
    assert (await client.post("/v1/items", json={"name": "fine", "amount": 3.25}, headers=api_key_headers(key))).status_code == 200


# --- scopes -----------------------------------------------------------------------------------


async def test_scopes_declared_next_to_the_route(edge: dict[str, Any]) -> None:
    client = edge["client"]
    for scope, status in (("read", 403), ("write", 403), ("admin", 200)):
        r = await client.put("/v1/credentials", json={"name": "c"}, headers=api_key_headers(edge[scope]))
        assert r.status_code == status, scope
    # Refused before the body is parsed: this one is not even JSON.
    r = await client.put("/v1/credentials", content=b"x" * 999, headers={**api_key_headers(edge["write"]), "Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    # A POST that only reads can declare `read`.
    r = await client.post("/v1/items/preview", json={"name": "p"}, headers=api_key_headers(edge["read"]))
    assert (r.status_code, r.json()) == (200, {"preview": "p"})
    r = await client.post("/v1/items", json={"name": "p"}, headers=api_key_headers(edge["read"]))
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    # The matrix, as the README's table and the OpenAPI document show it.
    matrix = {(m, p): s for m, p, s in scope_matrix(edge["app"])}
    assert matrix[("PUT", "/v1/credentials")] == "admin" and matrix[("POST", "/v1/items/preview")] == "read"
    assert matrix[("POST", "/v1/uploads")] == "write" and matrix[("GET", "/v1/shared/{token}")] == "none"
    document = (await client.get("/openapi.json")).json()
    assert document["paths"]["/v1/credentials"]["put"]["x-billing-scope"] == "admin"
    # Every operation declares the problem+json answers the runtime may give it.
    responses = document["paths"]["/v1/credentials"]["put"]["responses"]
    assert {"401", "403", "413", "422", "429"} <= set(responses)
    assert all(list(responses[s]["content"]) == ["application/problem+json"] for s in ("401", "403", "413", "422", "429"))
    assert "401" not in document["paths"]["/v1/shared/{token}"]["get"]["responses"]  # no key is asked for there


async def test_a_topic_only_key_still_works(database_url: str, kafka_bootstrap: str, schema: str) -> None:
    """Keys announced on the topic alone (before the table existed) are still honoured."""
    key = generate_key(f"top-{uuid.uuid4().hex[:8]}", "read")
    await publish(kafka_bootstrap, key.event(label=None, now=NOW))
    async with serve(toy_app(database_url, kafka_bootstrap, schema)) as client:

        async def known() -> httpx.Response | None:
            r = await client.get("/v1/items/x", headers=api_key_headers(key.key))
            return r if r.status_code != 401 else None

        r = await eventually(known, "the service to learn the key", 10)
        assert r.status_code == 200
