"""The HTTP conventions every service shares, as one ASGI middleware and one lifespan hook:

- who calls: an API key (`AUTH_MODE=api_key`, the default) or a gateway's `X-Tenant-Id`
  (`AUTH_MODE=trusted_header`); the tenant comes only from there, never from the path or body;
- scope: GET/HEAD need `read`, every other method `write` (admin endpoints ask for `admin`
  through `api.AdminTenant`); 401 / 403 problem+json otherwise;
- a token bucket per key: 429 with `Retry-After`;
- `Idempotency-Key` on writes: the first successful response is stored and replayed, the same
  key with another request is a 409 `idempotency_key_reused`; a refused write (4xx/5xx) is not
  stored, so a retry runs again;
- the audit log: every successful write, with the request, the resource before (a GET of the same
  path through the app, for PUT/PATCH/DELETE) and the response after.

`install_http_conventions(app)` turns it all on for a `create_app` app. The tables come from
`http_tables(metadata)` and the migration helper `add_http_tables(op, schema)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table, text
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_runtime.audit import AUDIT_RECORDS, append_only_sql, audit_table, record
from billing_runtime.auth import AUTH_FAILURES, SCOPES, TENANT_PATTERN, KeyStore, Principal, key_from_headers, scope_allows
from billing_runtime.errors import BillingError, Unauthorized, problem
from billing_runtime.idempotency import IDEMPOTENT_REQUESTS, MAX_KEY_LENGTH, StoredResponse, claim, complete, idempotency_table, release
from billing_runtime.ratelimit import RATE_LIMITED, RateLimiter

log = logging.getLogger(__name__)
tracer = trace.get_tracer("billing_runtime.conventions")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Capability links (invoicing's shared documents) live under this prefix: the unguessable token in
# the path is the credential, so those are served without an API key.
SHARED_PATH_PREFIX = "/v1/shared/"
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", SHARED_PATH_PREFIX)
KEYS_LOAD_TIMEOUT = 120.0
# Set in the request's state by `record_audit_in`: the endpoint wrote the audit row itself.
AUDIT_RECORDED = "billing.audit_recorded"


def http_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The idempotency and audit tables, in the service's own schema (add beside `runtime_tables`)."""
    return idempotency_table(metadata), audit_table(metadata)


def add_http_tables(op: Any, schema: str) -> None:
    """For a service's Alembic migration: create both tables (if not there yet) and the audit trigger."""
    for table in http_tables(MetaData(schema=schema)):
        columns = [Column(c.name, c.type, nullable=c.nullable, autoincrement=c.autoincrement) for c in table.columns]
        pk = PrimaryKeyConstraint(*[c.name for c in table.primary_key.columns], name=f"pk_{table.name}")
        op.create_table(table.name, *columns, pk, schema=schema, if_not_exists=True)
    op.create_index("ix_audit_log_tenant_occurred_at", "audit_log", ["tenant", "occurred_at"], schema=schema, if_not_exists=True)
    for statement in append_only_sql(schema):
        op.execute(statement)


def drop_http_tables(op: Any, schema: str) -> None:
    op.execute(f'DROP TABLE IF EXISTS "{schema}".audit_log')
    op.execute(f'DROP FUNCTION IF EXISTS "{schema}".audit_log_append_only()')
    op.execute(f'DROP TABLE IF EXISTS "{schema}".idempotency_key')


def _tables(metadata: MetaData) -> tuple[Table, Table]:
    """The service's own Table objects when its metadata declares them, else the same definitions."""
    schema = metadata.schema
    found = metadata.tables.get(f"{schema}.idempotency_key"), metadata.tables.get(f"{schema}.audit_log")
    if found[0] is not None and found[1] is not None:
        return found[0], found[1]
    return http_tables(MetaData(schema=schema))


def install_http_conventions(app: FastAPI) -> None:
    """Turn on auth, scopes, rate limits, idempotency and audit for an app made by `create_app`.
    Calling it again does nothing."""
    if getattr(app.state, "http_conventions", None) is not None:
        return
    runtime = app.state.runtime
    conventions = HttpConventions(runtime)
    app.state.http_conventions = conventions
    app.add_middleware(_Middleware, conventions=conventions)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Mapping[str, Any] | None]:
        async with inner(a) as state:
            try:
                await conventions.start()
                yield state
            finally:
                await conventions.stop()

    app.router.lifespan_context = lifespan


class HttpConventions:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.service: str = runtime.name
        self.settings = runtime.settings
        self.idempotency, self.audit = _tables(runtime.metadata)
        self.keys = KeyStore(self.service)
        self.limiter = RateLimiter(self.settings.rate_limit_per_second, self.settings.rate_limit_burst)
        self._follow: asyncio.Task[None] | None = None

    @property
    def api_keys(self) -> bool:
        return bool(self.settings.auth_mode == "api_key")

    async def start(self) -> None:
        await self._check_tables()
        if not self.api_keys:
            return
        self._follow = asyncio.create_task(self._follow_keys(), name=f"{self.service}-api-keys")
        loaded = asyncio.ensure_future(self.keys.loaded.wait())
        done, _ = await asyncio.wait({loaded, self._follow}, timeout=KEYS_LOAD_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if loaded not in done:
            loaded.cancel()
            raise RuntimeError(f"{self.service}: could not read the API keys from Kafka within {KEYS_LOAD_TIMEOUT:.0f}s")

    async def _follow_keys(self) -> None:
        while True:
            try:
                await self.keys.follow(self.settings.kafka_bootstrap_servers)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: following the API keys failed; retrying in 1 s", self.service)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._follow is not None:
            while not self._follow.done():
                self._follow.cancel()
                await asyncio.wait({self._follow}, timeout=1.0)
            self._follow = None

    async def _check_tables(self) -> None:
        schema = self.runtime.metadata.schema
        async with self.runtime.engine.connect() as conn:
            for name in ("idempotency_key", "audit_log"):
                if (await conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{schema}".{name}'})).scalar() is None:
                    raise RuntimeError(f"{self.service}: table {schema}.{name} is missing; add `add_http_tables(op, {schema!r})` to a migration and migrate")

    def authenticate(self, headers: Headers) -> Principal | None:
        """The caller, or None when the request names nobody (the `Tenant` dependency then refuses it
        on every endpoint that needs a tenant)."""
        if self.api_keys:
            raw = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
            return None if raw is None else self.keys.verify(raw)
        tenant = headers.get("x-tenant-id")
        if not tenant:
            return None
        if not TENANT_PATTERN.match(tenant):
            raise Unauthorized("X-Tenant-Id must be lowercase letters, digits and dashes", code="tenant_invalid")
        scope = headers.get("x-api-scope", "admin")
        if scope not in SCOPES:
            raise Unauthorized("X-Api-Scope must be read, write or admin", code="scope_invalid")
        return Principal(tenant=tenant, key_id=headers.get("x-api-key-id", "gateway"), scope=scope)  # type: ignore[arg-type]


def _problem(exc: BillingError, headers: dict[str, str] | None = None) -> Response:
    response = problem(exc.status_code, exc.code, exc.message, field=exc.field, **exc.extra)
    response.headers.update(headers or {})
    return response


def _json(body: bytes, content_type: str | None) -> Any:
    if not body or not content_type or "json" not in content_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


class _Captured:
    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def content_type(self) -> str | None:
        return Headers(raw=self.headers).get("content-type")

    async def replay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class _Middleware:
    def __init__(self, app: ASGIApp, conventions: HttpConventions) -> None:
        self.app = app
        self.c = conventions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        headers = Headers(scope=scope)
        try:
            principal = self.c.authenticate(headers)
        except BillingError as refused:
            await _problem(refused)(scope, receive, send)
            return
        state["principal"] = principal
        if principal is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        needed = "read" if method in SAFE_METHODS else "write"
        if not scope_allows(principal.scope, needed):
            AUTH_FAILURES.labels(self.c.service, "insufficient_scope").inc()
            await _problem(BillingError(f"this key has scope `{principal.scope}`; {method} needs `{needed}`", code="insufficient_scope", status_code=403))(
                scope, receive, send
            )
            return
        # Per key; behind a gateway that names no key, per tenant.
        retry_after = self.c.limiter.take(f"{principal.tenant}/{principal.key_id}")
        if retry_after:
            RATE_LIMITED.labels(self.c.service).inc()
            refused = BillingError("too many requests for this API key; retry after the given seconds", code="rate_limited", status_code=429)
            await _problem(refused, {"Retry-After": str(retry_after)})(scope, receive, send)
            return
        if method in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        await self._write(scope, receive, send, principal, headers)

    async def _call(self, scope: Scope, body: bytes, receive: Receive) -> _Captured:
        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        captured = _Captured()
        await self.app(dict(scope), replay_body, captured.send)
        return captured

    async def _before(self, scope: Scope, receive: Receive) -> Any:
        """The resource as a GET of the same path shows it now (None when there is no such GET)."""
        skip = (b"content-type", b"content-length", b"idempotency-key")
        get = {**scope, "method": "GET", "query_string": b"", "headers": [(k, v) for k, v in scope["headers"] if k not in skip]}
        captured = await self._call(get, b"", receive)
        return _json(captured.body, captured.content_type) if captured.status == 200 else None

    async def _write(self, scope: Scope, receive: Receive, send: Send, principal: Principal, headers: Headers) -> None:
        body = await _read_body(receive)
        key = headers.get("idempotency-key")
        method, path = scope["method"], scope["path"]
        conventions, engine, now = self.c, self.c.runtime.engine, self.c.runtime.clock.now()
        if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
            await _problem(BillingError(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", code="idempotency_key_invalid", status_code=422))(
                scope, receive, send
            )
            return
        if key is not None:
            fingerprint = hashlib.sha256(b"\n".join([method.encode(), path.encode(), scope.get("query_string", b""), body])).hexdigest()
            ttl = timedelta(hours=conventions.settings.idempotency_ttl_hours)
            with tracer.start_as_current_span("http.idempotency.claim"):
                try:
                    async with engine.begin() as conn:
                        stored = await claim(
                            conn, conventions.idempotency, tenant=principal.tenant, key=key, fingerprint=fingerprint, method=method, path=path, now=now, ttl=ttl
                        )
                except BillingError as conflict:
                    IDEMPOTENT_REQUESTS.labels(conventions.service, conflict.code).inc()
                    await _problem(conflict, {"Retry-After": "1"} if conflict.code == "idempotency_key_in_flight" else None)(scope, receive, send)
                    return
            if stored is not None:
                IDEMPOTENT_REQUESTS.labels(conventions.service, "replayed").inc()
                replay = Response(stored.body, status_code=stored.status_code, media_type=stored.content_type, headers={"Idempotent-Replayed": "true"})
                await replay(scope, receive, send)
                return
            IDEMPOTENT_REQUESTS.labels(conventions.service, "first").inc()
        try:
            before = await self._before(scope, receive) if method in ("PUT", "PATCH", "DELETE") else None
            captured = await self._call(scope, body, receive)
        except BaseException:
            if key is not None:
                async with engine.begin() as conn:
                    await release(conn, conventions.idempotency, tenant=principal.tenant, key=key)
            raise
        # A hot write path may have written its audit row in its own transaction (`record_audit_in`).
        audit_due = 200 <= captured.status < 300 and not scope["state"].get(AUDIT_RECORDED, False)
        if key is None and not audit_due:
            await captured.replay(send)
            return
        async with engine.begin() as conn:
            if key is not None:
                if 200 <= captured.status < 300:
                    stored_response = StoredResponse(captured.status, captured.content_type, captured.body)
                    await complete(conn, conventions.idempotency, tenant=principal.tenant, key=key, response=stored_response, now=now)
                else:
                    # A refused write changed nothing (errors leave nothing half-written), and in an
                    # event-driven system "not known yet" passes: let the retry run again.
                    await release(conn, conventions.idempotency, tenant=principal.tenant, key=key)
            if audit_due:
                with tracer.start_as_current_span("http.audit.record"):
                    await _record_audit(conn, conventions, principal, scope, captured, body, before, key)
        await captured.replay(send)


async def _record_audit(
    conn: Any, c: HttpConventions, principal: Principal, scope: Scope, captured: _Captured, body: bytes, before: Any, key: str | None
) -> None:
    request_json = _json(body, Headers(scope=scope).get("content-type") or "application/json")
    await record(
        conn,
        c.audit,
        occurred_at=c.runtime.clock.now(),
        tenant=principal.tenant,
        key_id=principal.key_id,
        method=scope["method"],
        path=scope["path"],
        status_code=captured.status,
        idempotency_key=key,
        request=request_json,
        before=before,
        after=_json(captured.body, captured.content_type),
    )
    AUDIT_RECORDS.labels(c.service).inc()


async def record_audit_in(conn: Any, request: Any, *, request_json: str | bytes, response_json: str | bytes, status_code: int = 200) -> None:
    """Write this request's audit row inside the endpoint's own transaction, so it commits with the
    change it records, and tell the middleware not to write it again. For hot write paths: the JSON
    goes to PostgreSQL as text (the request body as received, the response as it will be sent),
    parsed by the database rather than again in Python. Does nothing without the conventions or a
    principal (as the middleware would not audit either)."""
    conventions: HttpConventions | None = getattr(request.app.state, "http_conventions", None)
    state = request.scope.get("state", {})
    principal: Principal | None = state.get("principal")
    if conventions is None or principal is None:
        return
    t = conventions.audit
    statement = text(
        f'INSERT INTO "{t.schema}"."{t.name}" (occurred_at, tenant, key_id, method, path, status_code, idempotency_key, request, after) '
        "VALUES (:occurred_at, :tenant, :key_id, :method, :path, :status_code, :idempotency_key, CAST(:request AS jsonb), CAST(:after AS jsonb))"
    )
    as_text = [v.decode() if isinstance(v, bytes) else v for v in (request_json, response_json)]
    with tracer.start_as_current_span("http.audit.record"):
        await conn.execute(
            statement,
            {
                "occurred_at": conventions.runtime.clock.now(),
                "tenant": principal.tenant,
                "key_id": principal.key_id,
                "method": request.method,
                "path": request.url.path,
                "status_code": status_code,
                "idempotency_key": request.headers.get("idempotency-key"),
                "request": as_text[0],
                "after": as_text[1],
            },
        )
    state[AUDIT_RECORDED] = True
    AUDIT_RECORDS.labels(conventions.service).inc()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
