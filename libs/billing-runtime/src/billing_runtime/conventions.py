"""The HTTP conventions every service shares, as one ASGI middleware and one lifespan hook.
In the order a request meets them:

- limits before anything is read: per client address, shared links (`/v1/shared/`) and provider
  webhooks (`/v1/webhooks/`) have a token bucket, and so do refused API keys (429 with
  `Retry-After`); a body larger than its limit (`BODY_LIMIT_BYTES`, `BODY_LIMITS` per path prefix)
  is a 413 `body_too_large`, by its Content-Length or as soon as it grows past it;
- who calls: an API key (`AUTH_MODE=api_key`, the default) or a gateway's `X-Tenant-Id`
  (`AUTH_MODE=trusted_header`); the tenant comes only from there, never from the path or body;
- scope: the one the matched route declares (`api.Read` / `Write` / `Admin`), else GET/HEAD need
  `read` and every other method `write`; 401 / 403 problem+json otherwise;
- a token bucket per key: 429 with `Retry-After`;
- input no service can take (`edge.py`): NUL characters, lone surrogates, NaN/Infinity, numbers
  beyond the platform's precision, in the path, query or JSON body: 422 naming the field;
- `Idempotency-Key` on writes: the first successful response is stored and replayed, the same
  key with another request is a 409 `idempotency_key_reused`; a refused write (4xx/5xx) is not
  stored and its key is released, so a retry runs again;
- the audit log: every successful write, with the request, the resource before (a GET of the same
  path through the app, for PUT/PATCH/DELETE) and the response after;
- one transaction per authenticated write (`unit.py`): the handler's sessions are savepoints of
  the request's transaction, which commits with the audit row and the stored response only when
  the answer is a 2xx; a 4xx, a 500, or an audit row that cannot be written rolls all of it back.

`install_http_conventions(app)` turns it all on for a `create_app` app. The tables come from
`http_tables(metadata)` and the migration helper `add_http_tables(op, schema)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, cast

from fastapi import FastAPI
from opentelemetry import trace
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table, text
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from billing_runtime import by_customer, crypto
from billing_runtime.audit import AUDIT_RECORDS, append_only_sql, audit_table, record
from billing_runtime.auth import AUTH_FAILURES, SCOPES, TENANT_PATTERN, KeyStore, Principal, ensure_registry, key_from_headers, scope_allows
from billing_runtime.edge import BODY_TOO_LARGE, INPUT_REJECTED, BodyTooLarge, body_limit, check_json, check_path, check_query
from billing_runtime.errors import BillingError, Unauthorized, problem
from billing_runtime.idempotency import IDEMPOTENT_REQUESTS, MAX_KEY_LENGTH, StoredResponse, claim, complete, idempotency_table, release
from billing_runtime.ratelimit import PREAUTH_LIMITED, RATE_LIMITED, RateLimiter
from billing_runtime.tasks import cancel, keep_running
from billing_runtime.unit import enter as enter_unit
from billing_runtime.unit import leave as leave_unit

log = logging.getLogger(__name__)
tracer = trace.get_tracer("billing_runtime.conventions")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Capability links (invoicing's shared documents) live under this prefix: the unguessable token in
# the path is the credential, so those are served without an API key.
SHARED_PATH_PREFIX = "/v1/shared/"
# Payment providers' webhooks: verified by their signature, not by an API key.
WEBHOOK_PATH_PREFIX = "/v1/webhooks/"
INFRA_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")
OPEN_PATHS = (*INFRA_PATHS, SHARED_PATH_PREFIX)
PUBLIC_PREFIXES = (SHARED_PATH_PREFIX, WEBHOOK_PATH_PREFIX)
# Once the key table is loaded, how long a starting service waits to catch up with the topic
# before it serves anyway (the table has every key `billing keys` issued).
KEYS_TOPIC_WAIT = 15.0
# Set in the request's state by `record_audit_in`: the endpoint wrote the audit row itself.
AUDIT_RECORDED = "billing.audit_recorded"
# Set by `response_holds_secret`: the response shows a secret once (a webhook signing secret), so
# its stored copy for Idempotency-Key replays is sealed (billing_runtime.crypto), never plain.
SECRET_RESPONSE = "billing.secret_response"


def response_holds_secret(request: Any) -> None:
    """Call from an endpoint whose response carries a secret: the idempotent copy is stored sealed
    with the service's keyring (or not stored at all when it has none); audit rows show any member
    named in `crypto.SECRET_FIELDS` as `…last4` in every case."""
    request.scope.setdefault("state", {})[SECRET_RESPONSE] = True


def _stored_where(service: str, tenant: str, key: str) -> bytes:
    return crypto.context(service, "idempotency_key", tenant, key)


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
    conventions = HttpConventions(runtime, app)
    app.state.http_conventions = conventions
    _add_scopes_to_openapi(app)
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

    # Yields whatever the inner lifespan yields (a state mapping or None): one of Starlette's two shapes.
    app.router.lifespan_context = cast("Lifespan[Any]", lifespan)


class HttpConventions:
    def __init__(self, runtime: Any, app: FastAPI | None = None) -> None:
        self.runtime = runtime
        self.app = app
        self.service: str = runtime.name
        self.settings = runtime.settings
        self.idempotency, self.audit = _tables(runtime.metadata)
        self.keys = KeyStore(self.service)
        self.limiter = RateLimiter(self.settings.rate_limit_per_second, self.settings.rate_limit_burst)
        self.public_limiter = RateLimiter(self.settings.public_rate_limit_per_second, self.settings.public_rate_limit_burst)
        self.public_exempt = [ipaddress.ip_network(cidr, strict=False) for cidr in self.settings.public_rate_limit_exempt]
        self.failure_limiter = RateLimiter(self.settings.auth_failure_rate_limit_per_second, self.settings.auth_failure_rate_limit_burst)
        self._tasks: list[asyncio.Task[None]] = []
        self._routes: list[_ApiRoute] | None = None
        self._routes_seen = 0

    @property
    def api_keys(self) -> bool:
        return bool(self.settings.auth_mode == "api_key")

    async def start(self) -> None:
        await self._check_tables()
        if not self.api_keys:
            return
        # The registry table first: it has every key, whatever the broker still holds.
        async with self.runtime.engine.begin() as conn:
            await ensure_registry(conn)
        count = await self.keys.load(self.runtime.engine)
        log.info("%s: %d API keys in the key table", self.service, count)
        following = partial(self.keys.follow, self.settings.kafka_bootstrap_servers)
        follow = asyncio.create_task(keep_running(following, f"{self.service} API key follower"), name=f"{self.service}-api-keys")
        self._tasks = [follow, asyncio.create_task(self._refresh_keys(), name=f"{self.service}-api-key-refresh")]
        loaded = asyncio.ensure_future(self.keys.loaded.wait())
        done, _ = await asyncio.wait({loaded, follow}, timeout=KEYS_TOPIC_WAIT, return_when=asyncio.FIRST_COMPLETED)
        if loaded not in done:
            loaded.cancel()
            log.warning("%s: not caught up with %s within %.0fs; serving with the key table", self.service, "billing.auth", KEYS_TOPIC_WAIT)

    async def _refresh_keys(self) -> None:
        while True:
            await asyncio.sleep(self.settings.api_keys_refresh_seconds)
            try:
                await self.keys.load(self.runtime.engine)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: reloading the API key table failed; keeping the keys known", self.service)

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel(task)
        self._tasks = []

    def route_scope(self, scope: Scope) -> str:
        """The scope the request's route declares, else the default of its method."""
        route = self._route(scope)
        if route is not None and route.scope is not None:
            return route.scope
        return "read" if scope["method"] in SAFE_METHODS else "write"

    def route_for_account(self, scope: Scope) -> bool:
        """Whether the request's route is open to a key restricted to one account (`ForAccount`)."""
        route = self._route(scope)
        return route is not None and route.for_account

    def route_account_query(self, scope: Scope) -> str | None:
        """The query parameter by which the request's route filters on an account, if any."""
        route = self._route(scope)
        return route.account_query if route is not None else None

    def _route(self, scope: Scope) -> _ApiRoute | None:
        method, path = scope["method"], scope["path"]
        if self.app is None:
            return None
        if self._routes is None or self._routes_seen != len(self.app.routes):
            self._routes, self._routes_seen = _api_routes(self.app), len(self.app.routes)
        for route in self._routes:
            if method in route.methods and route.path_regex.match(path):
                return route
        return None

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
        return Principal(tenant=tenant, key_id=headers.get("x-api-key-id", "gateway"), scope=scope)


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
        if scope["type"] != "http" or scope["path"].startswith(INFRA_PATHS):
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except _Refused as refused:
            await _problem(refused.error, refused.headers)(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        c, path, method = self.c, scope["path"], scope["method"]
        client = _client_address(scope)
        headers = Headers(scope=scope)
        # Limits before anything is read or verified.
        if path.startswith(PUBLIC_PREFIXES):
            retry_after = 0 if _within(client, c.public_exempt) else c.public_limiter.take(client)
            if retry_after:
                PREAUTH_LIMITED.labels(c.service, "public").inc()
                raise _Refused(_too_many("too many requests from this address", "rate_limited"), retry_after)
        elif retry_after := c.failure_limiter.blocked(client):
            PREAUTH_LIMITED.labels(c.service, "auth_failures").inc()
            raise _Refused(_too_many("too many refused API keys from this address", "auth_rate_limited"), retry_after)
        limit = body_limit(path, c.settings.body_limit_bytes, c.settings.body_limits)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            BODY_TOO_LARGE.labels(c.service).inc()
            raise _Refused(BodyTooLarge(f"the body is larger than this endpoint takes ({limit} bytes)", limit=limit))
        principal: Principal | None = None
        if not path.startswith(OPEN_PATHS):
            try:
                principal = c.authenticate(headers)
            except BillingError as refused:
                if refused.status_code == 401 and (retry_after := c.failure_limiter.take(client)):
                    PREAUTH_LIMITED.labels(c.service, "auth_failures").inc()
                    raise _Refused(_too_many("too many refused API keys from this address", "auth_rate_limited"), retry_after) from None
                raise _Refused(refused) from None
            scope.setdefault("state", {})["principal"] = principal
            if principal is None and path.startswith(by_customer.PREFIX):
                # Only a known caller's customer id names an account: without one, this path names
                # no route, and the answer is the one every account route gives an anonymous call.
                from billing_runtime.api import nobody_named

                raise _Refused(nobody_named(trusted_header=not c.api_keys))
            if principal is not None:
                # The partner's customer id for an account (`by_customer.py`), before the route is matched.
                by_customer.resolve_path(scope, principal.tenant, c.service)
                try:
                    by_customer.resolve_query(scope, principal.tenant, c.service, c.route_account_query(scope))
                except BillingError as refused:
                    raise _Refused(refused) from None
                needed = c.route_scope(scope)
                if not scope_allows(principal.scope, needed):
                    AUTH_FAILURES.labels(c.service, "insufficient_scope").inc()
                    message = f"this key has scope `{principal.scope}`; this request needs `{needed}`"
                    raise _Refused(BillingError(message, code="insufficient_scope", status_code=403))
                if principal.account_id is not None and not c.route_for_account(scope):
                    from billing_runtime.api import account_restricted

                    AUTH_FAILURES.labels(c.service, "account_restricted").inc()
                    raise _Refused(account_restricted())
                # Per key; behind a gateway that names no key, per tenant.
                retry_after = c.limiter.take(f"{principal.tenant}/{principal.key_id}")
                if retry_after:
                    RATE_LIMITED.labels(c.service).inc()
                    raise _Refused(_too_many("too many requests for this API key", "rate_limited"), retry_after)
        try:
            check_path(path, scope.get("raw_path"))
            check_query(scope.get("query_string", b""))
            body = b"" if method in SAFE_METHODS and declared is None else await _read_body(receive, limit)
            if body and "json" in (headers.get("content-type") or ""):
                check_json(body, max_integer_digits=c.settings.json_max_integer_digits, max_significant_digits=c.settings.json_max_significant_digits)
        except BodyTooLarge as refused:
            BODY_TOO_LARGE.labels(c.service).inc()
            raise _Refused(refused) from None
        except BillingError as refused:
            INPUT_REJECTED.labels(c.service, refused.code).inc()
            raise _Refused(refused) from None
        if principal is None or method in SAFE_METHODS:
            captured_receive = _replaying(body, receive) if method not in SAFE_METHODS or declared is not None else receive
            await self.app(scope, captured_receive, send)
            return
        await self._write(scope, receive, send, principal, headers, body)

    async def _call(self, scope: Scope, body: bytes, receive: Receive) -> _Captured:
        captured = _Captured()
        await self.app(dict(scope), _replaying(body, receive), captured.send)
        return captured

    async def _before(self, scope: Scope, receive: Receive) -> Any:
        """The resource as a GET of the same path shows it now (None when there is no such GET)."""
        skip = (b"content-type", b"content-length", b"idempotency-key")
        get = {**scope, "method": "GET", "query_string": b"", "headers": [(k, v) for k, v in scope["headers"] if k not in skip]}
        captured = await self._call(get, b"", receive)
        return _json(captured.body, captured.content_type) if captured.status == 200 else None

    async def _write(self, scope: Scope, receive: Receive, send: Send, principal: Principal, headers: Headers, body: bytes) -> None:
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
                if stored.body.startswith(crypto.PREFIX.encode()):
                    opened = conventions.runtime.sealing().open(stored.body.decode(), _stored_where(conventions.service, principal.tenant, key))
                    stored = StoredResponse(stored.status_code, stored.content_type, opened.encode())
                replay = Response(stored.body, status_code=stored.status_code, media_type=stored.content_type, headers={"Idempotent-Replayed": "true"})
                await replay(scope, receive, send)
                return
            IDEMPOTENT_REQUESTS.labels(conventions.service, "first").inc()
        # The handler, its audit row and the stored response: one transaction (`unit.py`).
        # Anything but a success rolls all of it back, and the key is released for a retry.
        committed = False
        kept = False
        try:
            async with engine.connect() as conn:
                transaction = await conn.begin()
                unit, token = enter_unit(conn)
                try:
                    before = await self._before(scope, receive) if method in ("PUT", "PATCH", "DELETE") else None
                    captured = await self._call(scope, body, receive)
                    if 200 <= captured.status < 300:
                        if key is not None:
                            # A reply that shows a secret is kept sealed, or not kept without a keyring.
                            keyring = getattr(conventions.runtime, "keyring", None)
                            secret = scope["state"].get(SECRET_RESPONSE, False)
                            if not secret or keyring is not None:
                                body_kept = captured.body
                                if secret and keyring is not None:
                                    body_kept = keyring.seal(body_kept.decode(), _stored_where(conventions.service, principal.tenant, key)).encode()
                                stored_response = StoredResponse(captured.status, captured.content_type, body_kept)
                                await complete(conn, conventions.idempotency, tenant=principal.tenant, key=key, response=stored_response, now=now)
                                kept = True
                        # A hot write path may have written its audit row itself (`record_audit_in`).
                        if not scope["state"].get(AUDIT_RECORDED, False):
                            with tracer.start_as_current_span("http.audit.record"):
                                await _record_audit(conn, conventions, principal, scope, captured, body, before, key)
                        await transaction.commit()
                        committed = True
                finally:
                    leave_unit(token)
                    if transaction.is_active:
                        await transaction.rollback()
        except BaseException:
            if key is not None:
                await self._release(principal, key)
            raise
        if committed and unit.wrote_outbox:
            conventions.runtime._wake_relay()
        if key is not None and not kept:
            # A refused write changed nothing (its transaction is rolled back), and in an
            # event-driven system "not known yet" passes: let the retry run again. (A reply holding
            # a secret with no keyring to seal it is not kept either.)
            await self._release(principal, key)
        await captured.replay(send)

    async def _release(self, principal: Principal, key: str) -> None:
        async with self.c.runtime.engine.begin() as conn:
            await release(conn, self.c.idempotency, tenant=principal.tenant, key=key)


async def _record_audit(
    conn: Any, c: HttpConventions, principal: Principal, scope: Scope, captured: _Captured, body: bytes, before: Any, key: str | None
) -> None:
    request_json = crypto.redact_secrets(_json(body, Headers(scope=scope).get("content-type") or "application/json"))
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
        before=crypto.redact_secrets(before),
        after=crypto.redact_secrets(_json(captured.body, captured.content_type)),
    )
    AUDIT_RECORDS.labels(c.service).inc()


async def record_audit_in(conn: Any, request: Any, *, request_json: str | bytes, response_json: str | bytes, status_code: int = 200) -> None:
    """Write this request's audit row inside the endpoint's own transaction (the request's unit),
    and tell the middleware not to write it again. For hot write paths: the JSON
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


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing it (413) as soon as it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than this endpoint takes ({limit} bytes)", limit=limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over the body already read, then whatever comes next (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _client_address(scope: Scope) -> str:
    """The caller's address, as the server saw it (behind a proxy, run uvicorn with
    `--proxy-headers --forwarded-allow-ips` so this is the client's, not the proxy's)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # "unknown", a test client's name
        return False
    return any(ip in network for network in networks)


def _too_many(what: str, code: str) -> BillingError:
    return BillingError(f"{what}; retry after the given seconds", code=code, status_code=429)


class _Refused(Exception):
    def __init__(self, error: BillingError, retry_after: int | None = None) -> None:
        self.error = error
        self.headers = {"Retry-After": str(retry_after)} if retry_after else None


@dataclass(frozen=True)
class _ApiRoute:
    path: str
    path_regex: re.Pattern[str]
    methods: frozenset[str]
    scope: str | None
    for_account: bool = False
    account_query: str | None = None  # the query parameter filtering by account, for `?customer_id=`


def _api_routes(app: FastAPI) -> list[_ApiRoute]:
    """Every API route of the app with its full path and the scope it declares, in routing order."""
    from fastapi.routing import APIRoute, iter_route_contexts

    from billing_runtime.api import declared_scope, serves_one_account  # api imports service, which imports this module

    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.path is not None:  # an APIRoute always has a path
            methods = frozenset(context.methods or ())
            account_query = by_customer.account_param(context.original_route)
            found.append(_ApiRoute(context.path, context.path_regex, methods, declared_scope(context), serves_one_account(context), account_query))
    return found


def scope_matrix(app: FastAPI) -> list[tuple[str, str, str]]:
    """Every API route of an app with the scope it needs: `(method, path, scope)`, where scope is
    `read` / `write` / `admin`, or `none` for routes no key is asked for (shared links, webhooks).
    Only the API (`/v1/…`): the portal's pages take a session cookie, not a key."""
    rows = []
    for route in _api_routes(app):
        if route.path.startswith(INFRA_PATHS) or not route.path.startswith("/v1/"):
            continue
        for method in sorted(route.methods - {"HEAD"}):
            if route.path.startswith(PUBLIC_PREFIXES):
                needed = "none"
            else:
                needed = route.scope or ("read" if method in SAFE_METHODS else "write")
            rows.append((method, route.path, needed))
    return sorted(rows, key=lambda r: (r[1], r[0]))


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "Stable: what went wrong, for programs."},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "Where: `path`, `query.<name>` or the JSON path of a body field."},
    },
    "additionalProperties": True,
}
# What the runtime itself may answer on any route, before or around its handler.
_EDGE_RESPONSES = {
    "400": "http_error: the body could not be parsed as its content type",
    "404": "not_found: no such resource of yours (another tenant's id answers the same)",
    "409": "conflict: idempotency_key_reused / idempotency_key_in_flight, or the resource's own conflict",
    "413": "body_too_large: the body is over this route's limit",
    "422": "invalid input (validation_error, nul_character, invalid_unicode, number_not_finite, number_out_of_range, number_too_precise, "
    "date_out_of_range, unknown_currency, ...)",
    "429": "rate_limited / auth_rate_limited, with Retry-After",
}
_AUTH_RESPONSES = {"401": "api_key_required / api_key_invalid / api_key_revoked", "403": "insufficient_scope"}


def _add_scopes_to_openapi(app: FastAPI) -> None:
    """Each operation in the OpenAPI document says the scope it needs (`x-billing-scope`) and the
    problem+json answers any route may give (400, 404, 409, 413, 422, 429, and 401/403 where a key
    is asked for), so a client and a fuzzer know every status and its body;
    a 422 is problem+json, not FastAPI's default shape."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {})["ProblemDetails"] = PROBLEM_SCHEMA
        problem_content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
        for method, path, needed in scope_matrix(app):
            operation = document.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None:
                continue
            operation["x-billing-scope"] = needed
            responses = operation.setdefault("responses", {})
            answers = {**_EDGE_RESPONSES, **(_AUTH_RESPONSES if needed != "none" else {})}
            for status, description in answers.items():
                given = responses.get(status) or {}
                responses[status] = {**given, "description": given.get("description") or description, "content": problem_content}
            for status, given in responses.items():  # a route's own error answers (a 503) are problem+json too
                if status[:1] in ("4", "5") and "content" not in given:
                    given["content"] = problem_content
        by_customer.add_to_openapi(document)
        schemas = document["components"]["schemas"]
        if not any("HTTPValidationError" in json.dumps(op) for item in document.get("paths", {}).values() for op in item.values()):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the document
