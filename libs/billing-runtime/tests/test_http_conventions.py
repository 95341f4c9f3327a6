"""API keys, scopes, rate limits, Idempotency-Key and the audit log, on a toy service with a real
PostgreSQL and a real Tansu broker, in AUTH_MODE=api_key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import Column, String, Table, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from billing_runtime.api import AdminTenant, ForAccount, OwnAccount, Read, Runtime, Tenant, own_account, page
from billing_runtime.auth import KeyStore, generate_key, parse_key, publish, revocation
from billing_runtime.config import CommonSettings
from billing_runtime.conventions import add_http_tables, install_http_conventions
from billing_runtime.db import schema_metadata
from billing_runtime.errors import Conflict, NotFound
from billing_runtime.ratelimit import RateLimiter
from billing_runtime.service import ServiceRuntime, create_app, runtime_tables
from billing_runtime.testing import api_key_headers, eventually, serve

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


class NoteIn(BaseModel):
    text: str


def toy_router(notes: Table) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/notes")
    async def list_notes(tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
        async with runtime.transaction() as s:
            rows = (await s.execute(select(notes).where(notes.c.tenant == tenant).order_by(notes.c.id))).all()
        return page([{"id": r.id, "text": r.text} for r in rows], 100, None)

    @router.get("/notes/{note_id}")
    async def get_note(note_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, str]:
        async with runtime.transaction() as s:
            row = (await s.execute(select(notes).where(notes.c.tenant == tenant, notes.c.id == note_id))).first()
        if row is None:
            raise NotFound(f"no note {note_id}")
        return {"id": row.id, "text": row.text}

    @router.post("/notes", status_code=201)
    async def create_note(body: NoteIn, tenant: Tenant, runtime: Runtime) -> dict[str, str]:
        note_id = uuid.uuid4().hex
        async with runtime.transaction() as s:
            await s.execute(notes.insert().values(tenant=tenant, id=note_id, text=body.text))
        return {"id": note_id, "text": body.text}

    @router.put("/notes/{note_id}")
    async def put_note(note_id: str, body: NoteIn, tenant: Tenant, runtime: Runtime) -> dict[str, str]:
        async with runtime.transaction() as s:
            stmt = pg_insert(notes).values(tenant=tenant, id=note_id, text=body.text)
            await s.execute(stmt.on_conflict_do_update(index_elements=["tenant", "id"], set_={"text": body.text}))
        return {"id": note_id, "text": body.text}

    @router.get("/accounts/{account_id}/notes", dependencies=[Read, ForAccount])
    async def account_notes(account_id: str, tenant: Tenant, account: OwnAccount) -> dict[str, str]:
        return {"tenant": tenant, "account_id": own_account(account, account_id) or ""}

    @router.post("/notes/{note_id}/then-fail")
    async def write_then_fail(note_id: str, body: NoteIn, tenant: Tenant, runtime: Runtime) -> dict[str, str]:
        """Writes and commits its transaction, then fails as a bug would (`boom`: 500), is
        refused (`refuse`: 409), or answers what the audit log cannot store (`nul`: jsonb has no U+0000)."""
        async with runtime.transaction() as s:
            await s.execute(notes.insert().values(tenant=tenant, id=note_id, text=body.text))
        if body.text == "refuse":
            raise Conflict("refused after writing", code="refused_late")
        if body.text == "nul":
            return {"id": note_id, "text": "a\x00b"}
        raise RuntimeError("a bug after the commit")

    @router.get("/shared/{token}")
    async def shared(token: str) -> dict[str, str]:
        return {"token": token}

    @router.post("/admin/reindex")
    async def reindex(tenant: AdminTenant) -> dict[str, str]:
        return {"reindexed_for": tenant}

    return router


class Toy:
    def __init__(self, database_url: str, bootstrap: str, **settings: Any) -> None:
        self.schema = f"toyhttp_{uuid.uuid4().hex[:8]}"
        self.metadata = schema_metadata(self.schema)
        self.notes = Table("note", self.metadata, Column("tenant", String, primary_key=True), Column("id", String, primary_key=True), Column("text", String))
        runtime_tables(self.metadata)
        self.settings = CommonSettings(database_url=database_url, kafka_bootstrap_servers=bootstrap, clock_fixed_at=NOW, auth_mode="api_key", **settings)
        self.runtime = ServiceRuntime(f"toy-{self.schema}", self.settings, self.metadata)
        self.app = create_app(self.runtime, [toy_router(self.notes)], title="toy")
        install_http_conventions(self.app)

    async def create(self) -> None:
        async with self.runtime.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            await conn.run_sync(self.metadata.create_all)
            # What a service's migration does: `add_http_tables(op, SCHEMA)`.
            await conn.run_sync(lambda sync: add_http_tables(Operations(MigrationContext.configure(sync)), self.schema))


async def issue(bootstrap: str, tenant: str, scope: str, account_id: str | None = None) -> str:
    key = generate_key(tenant, scope, account_id=account_id)  # type: ignore[arg-type]  # tests pass unknown scopes too
    await publish(bootstrap, key.event(label="test", now=NOW))
    return key.key


async def wait_known(client: httpx.AsyncClient, key: str) -> None:
    """A key issued after the service started is known once the service has read its event."""

    async def known() -> bool:
        return (await client.get("/v1/notes", headers=api_key_headers(key))).status_code != 401

    await eventually(known, "the service to learn the key", 10)


@pytest.fixture
async def toy(database_url: str, kafka_bootstrap: str) -> Toy:
    t = Toy(database_url, kafka_bootstrap)
    await t.create()
    return t


@pytest.fixture
async def keys(kafka_bootstrap: str) -> dict[str, str]:
    tenant = f"p-{uuid.uuid4().hex[:8]}"
    other = f"q-{uuid.uuid4().hex[:8]}"
    return {
        "tenant": tenant,
        "other": other,
        "read": await issue(kafka_bootstrap, tenant, "read"),
        "write": await issue(kafka_bootstrap, tenant, "write"),
        "admin": await issue(kafka_bootstrap, tenant, "admin"),
        "other_write": await issue(kafka_bootstrap, other, "write"),
    }


@pytest.fixture
async def client(toy: Toy, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(toy.app) as c:
        yield c


def test_key_format_and_hash_only_in_the_event() -> None:
    key = generate_key("northwind-it", "write")
    assert key.key.startswith(f"bk_live_{key.key_id}_")
    assert parse_key(key.key) == (key.key_id, key.key.rsplit("_", 1)[1])
    event = key.event(label=None, now=NOW)
    wire = event.model_dump_json()
    assert key.key.rsplit("_", 1)[1] not in wire and key.key not in wire
    store = KeyStore()
    store.apply(event)
    assert store.verify(key.key).tenant == "northwind-it"
    with pytest.raises(Exception, match="not valid"):
        store.verify(key.key[:-1] + ("0" if key.key[-1] != "0" else "1"))
    store.apply(revocation(key.key_id, "northwind-it", reason=None, now=NOW))
    with pytest.raises(Exception, match="revoked"):
        store.verify(key.key)


def test_a_revocation_by_another_tenant_changes_nothing() -> None:
    key = generate_key("northwind-it", "read")
    store = KeyStore()
    store.apply(key.event(label=None, now=NOW))
    store.apply(revocation(key.key_id, "cloudy-ltd", reason=None, now=NOW))
    assert store.verify(key.key).key_id == key.key_id


def test_token_bucket() -> None:
    clock = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, now=lambda: clock[0])
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("k") == 1
    assert limiter.take("other") == 0
    clock[0] += 0.5
    assert limiter.take("k") == 0


async def test_missing_wrong_and_revoked_keys_are_401(client: httpx.AsyncClient, keys: dict[str, str], kafka_bootstrap: str) -> None:
    r = await client.get("/v1/notes")
    assert (r.status_code, r.json()["code"]) == (401, "api_key_required")
    assert r.headers["content-type"] == "application/problem+json"
    for bad in ("nonsense", keys["write"][:-4] + "abcd", "bk_live_k0000000000000000_" + "0" * 64):
        r = await client.get("/v1/notes", headers=api_key_headers(bad))
        assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid"), bad
    # A tenant header is no substitute for a key.
    r = await client.get("/v1/notes", headers={"X-Tenant-Id": keys["tenant"]})
    assert r.status_code == 401

    await wait_known(client, keys["write"])
    key_id = parse_key(keys["write"])[0]  # type: ignore[index]  # a key just issued parses
    await publish(kafka_bootstrap, revocation(key_id, keys["tenant"], reason="test", now=NOW))

    async def refused() -> httpx.Response | None:
        r = await client.get("/v1/notes", headers=api_key_headers(keys["write"]))
        return r if r.status_code == 401 else None

    r = await eventually(refused, "the revocation to reach the service", 10)
    assert (r.status_code, r.json()["code"]) == (401, "api_key_revoked")


async def test_shared_links_need_no_key(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    # `/v1/shared/` is for capability links: the token in the path is the credential.
    r = await client.get("/v1/shared/tok-123")
    assert (r.status_code, r.json()) == (200, {"token": "tok-123"})
    assert (await client.get("/v1/notes")).status_code == 401
    assert (await client.get("/v1/sharedx")).status_code in (401, 404)


async def test_scopes(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    await wait_known(client, keys["admin"])
    assert (await client.get("/v1/notes", headers=api_key_headers(keys["read"]))).status_code == 200
    r = await client.post("/v1/notes", json={"text": "x"}, headers=api_key_headers(keys["read"]))
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    assert (await client.post("/v1/notes", json={"text": "x"}, headers=api_key_headers(keys["write"]))).status_code == 201
    r = await client.post("/v1/admin/reindex", headers=api_key_headers(keys["write"]))
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    r = await client.post("/v1/admin/reindex", headers=api_key_headers(keys["admin"]))
    assert r.json() == {"reindexed_for": keys["tenant"]}


async def test_tenant_comes_from_the_key_only(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    await wait_known(client, keys["other_write"])
    await client.put("/v1/notes/n1", json={"text": "secret of p"}, headers=api_key_headers(keys["write"]))
    spoof = {**api_key_headers(keys["other_write"]), "X-Tenant-Id": keys["tenant"]}
    r = await client.get("/v1/notes/n1", headers=spoof)
    assert r.status_code == 404
    assert "secret of p" not in (await client.get("/v1/notes", headers=spoof)).text


async def test_a_key_restricted_to_one_account(client: httpx.AsyncClient, keys: dict[str, str], kafka_bootstrap: str) -> None:
    """Only routes declaring `ForAccount` take it, and they see its account only; another account
    is a 404, every other route a 403 (before the handler runs, and for writes too)."""
    restricted = await issue(kafka_bootstrap, keys["tenant"], "write", account_id="acct-a")

    async def known() -> httpx.Response | None:
        r = await client.get("/v1/accounts/acct-a/notes", headers=api_key_headers(restricted))
        return r if r.status_code != 401 else None

    r = await eventually(known, "the service to learn the restricted key", 10)
    assert r.status_code == 200 and r.json() == {"tenant": keys["tenant"], "account_id": "acct-a"}
    r = await client.get("/v1/accounts/acct-b/notes", headers=api_key_headers(restricted))
    assert (r.status_code, r.json()["code"]) == (404, "account_not_found")
    for method, path in (("GET", "/v1/notes"), ("GET", "/v1/notes/x"), ("POST", "/v1/notes"), ("PUT", "/v1/notes/x")):
        r = await client.request(method, path, headers=api_key_headers(restricted), json={"text": "t"})
        assert (r.status_code, r.json()["code"]) == (403, "account_restricted"), (method, path)
    assert (await client.get("/v1/notes", headers=api_key_headers(keys["read"]))).json()["items"] == []  # nothing was written
    # A tenant-wide key reaches any account of its tenant.
    assert (await client.get("/v1/accounts/acct-b/notes", headers=api_key_headers(keys["read"]))).json()["account_id"] == "acct-b"


def test_an_account_restriction_travels_in_the_event_and_the_store() -> None:
    key = generate_key("p-acme", "read", account_id="acct-a")
    event = key.event(label=None, now=NOW)
    assert event.data.account_id == "acct-a"
    store = KeyStore("test")
    store.apply(event)
    assert store.verify(key.key).account_id == "acct-a"
    tenant_wide = generate_key("p-acme", "read")
    store.apply(tenant_wide.event(label=None, now=NOW))
    assert store.verify(tenant_wide.key).account_id is None


async def test_the_registry_keeps_the_account_restriction(database_url: str) -> None:
    from billing_runtime.auth import ensure_registry, register, registry_keys
    from billing_runtime.db import create_engine

    engine = create_engine(database_url, pool_size=1)
    key = generate_key("p-acme", "read", account_id="acct-a")
    try:
        async with engine.begin() as conn:
            await ensure_registry(conn)
            await register(conn, key, label="test", now=NOW)
        async with engine.connect() as conn:
            found = {k.key_id: k for k in await registry_keys(conn)}
    finally:
        await engine.dispose()
    assert found[key.key_id].account_id == "acct-a"


async def test_idempotency_replay_and_reuse(client: httpx.AsyncClient, keys: dict[str, str], toy: Toy) -> None:
    await wait_known(client, keys["write"])
    h = {**api_key_headers(keys["write"]), "Idempotency-Key": "create-1"}
    # A refused request is not remembered: the corrected retry with the same key runs.
    assert (await client.post("/v1/notes", json={"text": ["bad"]}, headers=h)).status_code == 422
    first = await client.post("/v1/notes", json={"text": "hello"}, headers=h)
    again = await client.post("/v1/notes", json={"text": "hello"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    r = await client.post("/v1/notes", json={"text": "other"}, headers=h)
    assert (r.status_code, r.json()["code"]) == (409, "idempotency_key_reused")
    listed = (await client.get("/v1/notes", headers=api_key_headers(keys["write"]))).json()["items"]
    assert [n["text"] for n in listed] == ["hello"]
    # Keys are per tenant: another tenant's same key is a new request.
    await wait_known(client, keys["other_write"])
    r = await client.post("/v1/notes", json={"text": "hello"}, headers={**api_key_headers(keys["other_write"]), "Idempotency-Key": "create-1"})
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]
    # It survives a restart: the storage is the service's table.
    restarted = Toy.__new__(Toy)
    restarted.__dict__.update(toy.__dict__)
    restarted.runtime = ServiceRuntime(toy.runtime.name, toy.settings, toy.metadata)
    restarted.app = create_app(restarted.runtime, [toy_router(toy.notes)], title="toy")
    install_http_conventions(restarted.app)
    async with serve(restarted.app) as c2:
        replay = await c2.post("/v1/notes", json={"text": "hello"}, headers=h)
    assert replay.json() == first.json()


async def test_audit_log_records_who_what_before_after(client: httpx.AsyncClient, keys: dict[str, str], toy: Toy) -> None:
    await wait_known(client, keys["write"])
    await client.put("/v1/notes/a1", json={"text": "v1"}, headers=api_key_headers(keys["write"]))
    await client.put("/v1/notes/a1", json={"text": "v2"}, headers={**api_key_headers(keys["write"]), "Idempotency-Key": "upd"})
    await client.put("/v1/notes/a1", json={"text": 3}, headers=api_key_headers(keys["write"]))  # 422: not a write that happened
    audit = toy.app.state.http_conventions.audit
    async with toy.runtime.engine.connect() as conn:
        rows = (await conn.execute(select(audit).where(audit.c.tenant == keys["tenant"]).order_by(audit.c.id))).all()
    assert [(r.method, r.path, r.status_code) for r in rows] == [("PUT", "/v1/notes/a1", 200)] * 2
    assert rows[0].key_id == parse_key(keys["write"])[0]  # type: ignore[index]  # a key just issued parses
    assert (rows[0].before, rows[0].after) == (None, {"id": "a1", "text": "v1"})
    assert (rows[1].before, rows[1].after, rows[1].request) == ({"id": "a1", "text": "v1"}, {"id": "a1", "text": "v2"}, {"text": "v2"})
    assert rows[1].idempotency_key == "upd"
    with pytest.raises(DBAPIError, match="append-only"):
        async with toy.runtime.engine.begin() as conn:
            await conn.execute(audit.delete().where(audit.c.id == rows[0].id))


async def test_a_failed_write_stores_nothing_and_releases_its_key(toy: Toy, keys: dict[str, str]) -> None:
    """Issue 12: a handler's writes, its audit row and its stored response commit together. A 500,
    a 4xx or an audit row that cannot be written after the handler "committed" leaves no note, no
    audit row, and the Idempotency-Key free for the retry."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=toy.app, raise_app_exceptions=False), base_url="http://toy") as client:
        async with toy.app.router.lifespan_context(toy.app):
            await wait_known(client, keys["write"])
            for text_, status in (("boom", 500), ("refuse", 409), ("nul", 500)):
                h = {**api_key_headers(keys["write"]), "Idempotency-Key": f"late-{text_}"}
                r = await client.post(f"/v1/notes/n-{text_}/then-fail", json={"text": text_}, headers=h)
                assert r.status_code == status, (text_, r.text)
                assert (await client.get(f"/v1/notes/n-{text_}", headers=api_key_headers(keys["read"]))).status_code == 404, text_
                # The key is not left in flight: the same key runs again (and fails again the same way).
                again = await client.post(f"/v1/notes/n-{text_}/then-fail", json={"text": text_}, headers=h)
                assert again.status_code == status, (text_, again.text)
    audit, idem = toy.app.state.http_conventions.audit, toy.app.state.http_conventions.idempotency
    async with toy.runtime.engine.connect() as conn:
        assert (await conn.execute(select(audit).where(audit.c.tenant == keys["tenant"]))).all() == []
        assert (await conn.execute(select(idem).where(idem.c.tenant == keys["tenant"]))).all() == []


async def test_rate_limit_429_with_retry_after(database_url: str, kafka_bootstrap: str) -> None:
    toy = Toy(database_url, kafka_bootstrap, rate_limit_per_second=0.5, rate_limit_burst=3)
    await toy.create()
    key = await issue(kafka_bootstrap, f"r-{uuid.uuid4().hex[:8]}", "read")
    async with serve(toy.app) as client:
        # wait_known spends tokens too, so count only after the key is known.
        statuses = []
        for _ in range(200):
            r = await client.get("/v1/notes", headers=api_key_headers(key))
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
            await asyncio.sleep(0.05) if r.status_code == 401 else None
    assert statuses.count(200) <= 3 and statuses[-1] == 429
    assert r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1


async def test_framework_errors_are_problem_json(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    await wait_known(client, keys["write"])
    for method, path, body, status, code in (
        ("GET", "/v1/nowhere", None, 404, "not_found"),
        ("DELETE", "/v1/notes", None, 405, "method_not_allowed"),
        ("POST", "/v1/notes", {"text": ["no"]}, 422, "validation_error"),
        ("GET", "/v1/notes/missing", None, 404, "not_found"),
    ):
        r = await client.request(method, path, json=body, headers=api_key_headers(keys["write"]))
        assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (status, "application/problem+json", code), path
