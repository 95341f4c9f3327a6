"""API keys: their format, how they are issued, and how every service verifies them on its own.

A key reads `bk_live_<key_id>_<secret>`. It is shown once, when issued; only the SHA-256 of the
secret travels (an `ApiKeyIssued` event on `billing.auth`) and is kept. The secret is 256 random
bits, so a plain SHA-256 is enough (a slow password hash protects low-entropy secrets only).

The registry's source of truth is a table in PostgreSQL, `billing_auth.api_key` (one row per key:
id, tenant, scope, SHA-256 of the secret, label, issued, revoked), in the database every service
already uses. `billing keys issue/revoke` write the row first and then publish the event; the topic
only distributes. Every service instance loads the table at startup, reloads it every
`API_KEYS_REFRESH_SECONDS`, and follows `billing.auth` from the beginning (no consumer group) so a
new key or a revocation takes effect within moments. A broker that lost the topic (the embedded one
keeps nothing; real Kafka deletes after its retention) loses nothing: the table still has every key.
A request is verified in memory, without calling anyone.

A key may be **restricted to one billing account** (`account_id`): the portal mints such a key for
an end customer's session. The principal then carries `account_id`; every route refuses it (403
`account_restricted`) unless the route declares it serves one account (`ForAccount` in
`billing_runtime.api`), and those routes scope every read to that account (another account's id
answers 404). The restriction is in the key, so no caller can widen it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy import CheckConstraint, Column, DateTime, MetaData, String, Table, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from billing_events import ApiKeyIssued, ApiKeyRevoked, CloudEvent, EnvelopeError, attributes_from_headers, from_kafka, model_for, new_event, to_kafka
from billing_events.topics import AUTH
from billing_runtime.errors import BillingError, Unauthorized
from billing_runtime.kafka import read_from_start

log = logging.getLogger(__name__)
tracer = trace.get_tracer("billing_runtime.auth")

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
KEY_PREFIX = "bk_live_"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_KEY = re.compile(r"^bk_live_(k[0-9a-f]{16})_([0-9a-f]{64})$")

AUTH_FAILURES = Counter("billing_http_auth_failures_total", "Requests refused by authentication or scope", ["service", "code"])
KEYS_KNOWN = Gauge("billing_api_keys_known", "API keys this instance knows, by state", ["service", "state"])
REGISTRY_LOADS = Counter("billing_api_key_registry_loads_total", "Loads of the API key table, by outcome", ["service", "outcome"])

# The key registry: one table in its own schema of the database the services share. Services only
# read it; `billing keys` writes it.
REGISTRY_SCHEMA = "billing_auth"
registry_metadata = MetaData(schema=REGISTRY_SCHEMA)
api_key_table = Table(
    "api_key",
    registry_metadata,
    Column("key_id", String(17), primary_key=True),
    Column("tenant", String(63), nullable=False),
    Column("scope", String(5), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("label", String(200), nullable=True),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_reason", String(500), nullable=True),
    # The one billing account the key may see (an end customer's portal session); NULL: tenant-wide.
    Column("account_id", String(200), nullable=True),
    CheckConstraint("scope IN ('read', 'write', 'admin')", name="ck_api_key_scope"),
)


class Forbidden(BillingError):
    status_code = 403
    code = "forbidden"


def scope_allows(held: str, needed: str) -> bool:
    """`admin` includes `write`, which includes `read`."""
    return SCOPES.index(held) >= SCOPES.index(needed)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant the key belongs to, the key's id (for the audit log), its scope,
    and, for a key restricted to one billing account, that account."""

    tenant: str
    key_id: str
    scope: Scope
    account_id: str | None = None

    def require(self, needed: Scope) -> None:
        if not scope_allows(self.scope, needed):
            raise Forbidden(f"this key has scope `{self.scope}`; this request needs `{needed}`", code="insufficient_scope")


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant: str
    scope: Scope
    key: str  # the whole key: give it to its holder once, store it nowhere
    account_id: str | None = None

    def event(self, *, label: str | None, now: datetime, source: str = "/cli/keys") -> CloudEvent[ApiKeyIssued]:
        data = ApiKeyIssued(
            key_id=self.key_id,
            tenant=self.tenant,
            scope=self.scope,
            secret_sha256=hash_secret(self.key.rsplit("_", 1)[1]),
            label=label,
            issued_at=now,
            account_id=self.account_id,
        )
        return new_event(data, source=source, tenant=self.tenant, subject=self.key_id, time=now)


def generate_key(tenant: str, scope: Scope, *, account_id: str | None = None, secret: str | None = None) -> IssuedKey:
    """A new key. `account_id` restricts it to one billing account; `secret` (64 hex digits) is for
    a holder that derives its secret instead of storing it (the portal), else 256 random bits."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError("a tenant is lowercase letters, digits and dashes (2 to 63)")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if account_id is not None and not account_id.strip():
        raise ValueError("an account restriction names an account")
    if secret is not None and not re.fullmatch(r"[0-9a-f]{64}", secret):
        raise ValueError("a key secret is 64 lowercase hex digits")
    key_id = "k" + secrets.token_hex(8)
    return IssuedKey(key_id=key_id, tenant=tenant, scope=scope, key=f"{KEY_PREFIX}{key_id}_{secret or secrets.token_hex(32)}", account_id=account_id)


def revocation(key_id: str, tenant: str, *, reason: str | None, now: datetime, source: str = "/cli/keys") -> CloudEvent[ApiKeyRevoked]:
    return new_event(ApiKeyRevoked(key_id=key_id, tenant=tenant, reason=reason, revoked_at=now), source=source, tenant=tenant, subject=key_id, time=now)


def parse_key(raw: str) -> tuple[str, str] | None:
    """`(key_id, secret)` of a well-formed key, else None."""
    match = _KEY.match(raw.strip())
    return (match.group(1), match.group(2)) if match else None


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization:
        kind, _, value = authorization.partition(" ")
        return value.strip() if kind.lower() == "bearer" else ""
    return x_api_key


@dataclass
class KeyRecord:
    key_id: str
    tenant: str
    scope: Scope
    secret_sha256: str
    label: str | None
    issued_at: datetime
    revoked_at: datetime | None = None
    account_id: str | None = None


class KeyStore:
    """The API keys this instance knows, folded from `billing.auth`."""

    def __init__(self, service: str = "") -> None:
        self.service = service
        self.keys: dict[str, KeyRecord] = {}
        self.loaded = asyncio.Event()
        self.revoked_before_issued: dict[str, datetime] = {}

    def apply(self, event: CloudEvent[Any]) -> None:
        data = event.data
        if isinstance(data, ApiKeyIssued):
            record = KeyRecord(data.key_id, data.tenant, data.scope, data.secret_sha256, data.label, data.issued_at, account_id=data.account_id)
            record.revoked_at = self.revoked_before_issued.pop(data.key_id, None)
            self.keys.setdefault(data.key_id, record)  # a key id is issued once; a replay changes nothing
        elif isinstance(data, ApiKeyRevoked):
            known = self.keys.get(data.key_id)
            if known is None:
                self.revoked_before_issued[data.key_id] = data.revoked_at
            elif known.tenant == data.tenant and known.revoked_at is None:
                known.revoked_at = data.revoked_at
        self._count()

    def merge(self, records: list[KeyRecord]) -> None:
        """Fold rows of the registry in. The table is the source of truth: a key the topic named
        differently (tenant, scope, hash) takes the table's version; a revocation in either stays."""
        for row in records:
            known = self.keys.get(row.key_id)
            if known is None:
                row.revoked_at = row.revoked_at or self.revoked_before_issued.pop(row.key_id, None)
                self.keys[row.key_id] = row
            elif (known.tenant, known.scope, known.secret_sha256, known.account_id) != (row.tenant, row.scope, row.secret_sha256, row.account_id):
                row.revoked_at = row.revoked_at or (known.revoked_at if known.tenant == row.tenant else None)
                self.keys[row.key_id] = row
            elif known.revoked_at is None and row.revoked_at is not None:
                known.revoked_at = row.revoked_at
        self._count()

    async def load(self, engine: Any) -> int:
        """Load (again) every key of the registry table; the number of keys in it."""
        with tracer.start_as_current_span("auth.load_key_registry") as span:
            try:
                async with engine.connect() as conn:
                    records = await registry_keys(conn)
            except Exception:
                REGISTRY_LOADS.labels(self.service, "failed").inc()
                raise
            self.merge(records)
            REGISTRY_LOADS.labels(self.service, "loaded").inc()
            span.set_attribute("billing.api_keys", len(records))
            return len(records)

    def _count(self) -> None:
        revoked = sum(1 for k in self.keys.values() if k.revoked_at is not None)
        KEYS_KNOWN.labels(self.service, "active").set(len(self.keys) - revoked)
        KEYS_KNOWN.labels(self.service, "revoked").set(revoked)

    def verify(self, raw: str | None) -> Principal:
        """The principal a presented key stands for; 401 for a missing, malformed, unknown, wrong or revoked key."""
        with tracer.start_as_current_span("auth.verify_api_key") as span:
            try:
                principal = self._verify(raw)
            except BillingError as refused:
                AUTH_FAILURES.labels(self.service, refused.code).inc()
                span.set_attribute("billing.auth.refused", refused.code)
                raise
            span.set_attribute("billing.api_key_id", principal.key_id)
            span.set_attribute("billing.tenant", principal.tenant)
            return principal

    def _verify(self, raw: str | None) -> Principal:
        if raw is None:
            raise Unauthorized("send your API key as `Authorization: Bearer bk_live_...`", code="api_key_required")
        parsed = parse_key(raw)
        if parsed is None:
            raise Unauthorized("the API key is not valid", code="api_key_invalid")
        key_id, secret = parsed
        record = self.keys.get(key_id)
        # Compare digests in constant time even for unknown ids, so timing tells nothing.
        expected = record.secret_sha256 if record else "0" * 64
        if not hmac.compare_digest(expected, hash_secret(secret)) or record is None:
            raise Unauthorized("the API key is not valid", code="api_key_invalid")
        if record.revoked_at is not None:
            raise Unauthorized("the API key has been revoked", code="api_key_revoked")
        return Principal(tenant=record.tenant, key_id=record.key_id, scope=record.scope, account_id=record.account_id)

    async def follow(self, bootstrap_servers: str) -> None:
        """Read `billing.auth` from the beginning, set `loaded` once caught up, then keep following."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", client_id=f"{self.service}-keys"
        )
        await consumer.start()
        try:
            ends = await read_from_start(consumer, AUTH)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        self._apply_message(list(message.headers or []), message.value or b"")
                if not self.loaded.is_set() and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                    self.loaded.set()
                    log.info("%s knows %d API keys", self.service, len(self.keys))
        finally:
            await consumer.stop()

    def _apply_message(self, headers: list[tuple[str, bytes]], value: bytes) -> None:
        model = model_for(attributes_from_headers(headers).get("type", ""))
        if model not in (ApiKeyIssued, ApiKeyRevoked):
            return
        try:
            self.apply(from_kafka(headers, value, model))
        except EnvelopeError:
            log.warning("ignored a malformed message on %s", AUTH.name)


async def publish(bootstrap_servers: str, *events: CloudEvent[Any]) -> None:
    """Send key events straight to `billing.auth` (the operator CLI has no outbox), waiting for acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=False, client_id="billing-keys")
    await producer.start()
    try:
        for event in events:
            message = to_kafka(event)
            await producer.send_and_wait(message.topic, message.value, key=message.key, headers=message.headers)
    finally:
        await producer.stop()


async def read_keys(bootstrap_servers: str) -> KeyStore:
    """Every key on `billing.auth`, folded (for `billing keys list`)."""
    store = KeyStore("cli")
    follow = asyncio.create_task(store.follow(bootstrap_servers))
    loaded = asyncio.ensure_future(store.loaded.wait())
    try:
        await asyncio.wait({follow, loaded}, return_when=asyncio.FIRST_COMPLETED)
        if follow.done():
            follow.result()
        return store
    finally:
        for task in (follow, loaded):
            task.cancel()
        await asyncio.gather(follow, loaded, return_exceptions=True)


def _record(row: Any) -> KeyRecord:
    return KeyRecord(row.key_id, row.tenant, row.scope, row.secret_sha256, row.label, row.issued_at, row.revoked_at, row.account_id)


async def ensure_registry(conn: AsyncConnection) -> None:
    """Create the registry's schema and table if they are not there (under a lock, so instances
    starting together do not race). Idempotent; `billing migrate` and every service start call it.
    When the table is there (with every column) it runs no DDL, so a service's role needs only
    SELECT on it. A table made before `account_id` existed gets the column (NULL: tenant-wide)."""
    if await _registry_current(conn):
        return
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('billing_auth.api_key'))"))
    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{REGISTRY_SCHEMA}"'))
    await conn.run_sync(lambda sync: registry_metadata.create_all(sync, checkfirst=True))
    await conn.execute(text(f'ALTER TABLE "{REGISTRY_SCHEMA}".api_key ADD COLUMN IF NOT EXISTS account_id varchar(200)'))


async def _registry_current(conn: AsyncConnection) -> bool:
    found = await conn.execute(
        text("SELECT 1 FROM information_schema.columns WHERE table_schema = :schema AND table_name = 'api_key' AND column_name = 'account_id'"),
        {"schema": REGISTRY_SCHEMA},
    )
    return found.first() is not None


async def registry_keys(conn: AsyncConnection) -> list[KeyRecord]:
    """Every key in the registry table (an empty list when the table does not exist yet)."""
    if (await conn.execute(text("SELECT to_regclass('billing_auth.api_key')"))).scalar() is None:
        return []
    if not await _registry_current(conn):
        # A table from before account restrictions: every key in it is tenant-wide.
        columns = [c for c in api_key_table.c if c.name != "account_id"]
        legacy = (await conn.execute(select(*columns).order_by(api_key_table.c.tenant, api_key_table.c.issued_at))).all()
        return [KeyRecord(r.key_id, r.tenant, r.scope, r.secret_sha256, r.label, r.issued_at, r.revoked_at) for r in legacy]
    rows = (await conn.execute(select(api_key_table).order_by(api_key_table.c.tenant, api_key_table.c.issued_at))).all()
    return [_record(r) for r in rows]


async def register(conn: AsyncConnection, key: IssuedKey, *, label: str | None, now: datetime) -> None:
    """Write an issued key's row (its hash, never the secret). A key id is issued once."""
    values = {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "scope": key.scope,
        "secret_sha256": hash_secret(key.key.rsplit("_", 1)[1]),
        "label": label,
        "issued_at": now,
        "account_id": key.account_id,
    }
    await conn.execute(pg_insert(api_key_table).values(**values).on_conflict_do_nothing(index_elements=["key_id"]))


async def revoke_in_registry(conn: AsyncConnection, key_id: str, *, reason: str | None, now: datetime) -> KeyRecord | None:
    """Mark a key revoked (a second revocation keeps the first date); None when there is no such key."""
    table = api_key_table
    await conn.execute(update(table).where(table.c.key_id == key_id, table.c.revoked_at.is_(None)).values(revoked_at=now, revoked_reason=reason))
    row = (await conn.execute(select(table).where(table.c.key_id == key_id))).first()
    return None if row is None else _record(row)


async def issue(
    engine: Any,
    bootstrap_servers: str,
    tenant: str,
    scope: Scope,
    *,
    label: str | None,
    now: datetime,
    account_id: str | None = None,
    secret: str | None = None,
    source: str = "/cli/keys",
) -> IssuedKey:
    """Issue a key: its row in the registry (the source of truth), then `ApiKeyIssued` on the topic
    so running services learn it at once. If the broker is unreachable the key is still issued:
    services read the table within `API_KEYS_REFRESH_SECONDS`. `account_id` restricts the key to
    one billing account."""
    key = generate_key(tenant, scope, account_id=account_id, secret=secret)
    async with engine.begin() as conn:
        await ensure_registry(conn)
        await register(conn, key, label=label, now=now)
    await _announce(bootstrap_servers, key.event(label=label, now=now, source=source))
    return key


async def revoke(engine: Any, bootstrap_servers: str, key_id: str, *, reason: str | None, now: datetime, source: str = "/cli/keys") -> KeyRecord:
    """Revoke a key in the registry, then announce it on the topic. LookupError for an unknown id."""
    async with engine.begin() as conn:
        await ensure_registry(conn)
        known = await revoke_in_registry(conn, key_id, reason=reason, now=now)
    if known is None:
        raise LookupError(f"no key {key_id} in the key registry")
    await _announce(bootstrap_servers, revocation(key_id, known.tenant, reason=reason, now=now, source=source))
    return known


async def _announce(bootstrap_servers: str, event: CloudEvent[Any]) -> None:
    try:
        await asyncio.wait_for(publish(bootstrap_servers, event), timeout=30)
    except Exception:
        # The row is committed: the services pick it up from the table on their next refresh.
        log.warning("could not publish %s on %s; services will read it from the key table", event.type, AUTH.name, exc_info=True)
