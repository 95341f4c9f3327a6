"""API keys: their format, how they are issued, and how every service verifies them on its own.

A key reads `bk_live_<key_id>_<secret>`. It is shown once, when issued; only the SHA-256 of the
secret travels (an `ApiKeyIssued` event on `billing.auth`) and is kept. The secret is 256 random
bits, so a plain SHA-256 is enough (a slow password hash protects low-entropy secrets only).

Every service instance folds `billing.auth` from the beginning into memory at startup (no consumer
group, so every instance sees every event) and keeps following it: a request is verified without
calling anyone, and a revocation takes effect as soon as the instance reads it.
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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry import trace
from prometheus_client import Counter, Gauge

from billing_events import ApiKeyIssued, ApiKeyRevoked, CloudEvent, EnvelopeError, attributes_from_headers, from_kafka, model_for, new_event, to_kafka
from billing_events.topics import AUTH
from billing_runtime.errors import BillingError, Unauthorized

log = logging.getLogger(__name__)
tracer = trace.get_tracer("billing_runtime.auth")

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
KEY_PREFIX = "bk_live_"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_KEY = re.compile(r"^bk_live_(k[0-9a-f]{16})_([0-9a-f]{64})$")

AUTH_FAILURES = Counter("billing_http_auth_failures_total", "Requests refused by authentication or scope", ["service", "code"])
KEYS_KNOWN = Gauge("billing_api_keys_known", "API keys this instance knows, by state", ["service", "state"])


class Forbidden(BillingError):
    status_code = 403
    code = "forbidden"


def scope_allows(held: str, needed: str) -> bool:
    """`admin` includes `write`, which includes `read`."""
    return SCOPES.index(held) >= SCOPES.index(needed)  # type: ignore[arg-type]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant the key belongs to, the key's id (for the audit log) and its scope."""

    tenant: str
    key_id: str
    scope: Scope

    def require(self, needed: Scope) -> None:
        if not scope_allows(self.scope, needed):
            raise Forbidden(f"this key has scope `{self.scope}`; this request needs `{needed}`", code="insufficient_scope")


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant: str
    scope: Scope
    key: str  # the whole key: give it to its holder once, store it nowhere

    def event(self, *, label: str | None, now: datetime, source: str = "/cli/keys") -> CloudEvent[ApiKeyIssued]:
        data = ApiKeyIssued(
            key_id=self.key_id, tenant=self.tenant, scope=self.scope, secret_sha256=hash_secret(self.key.rsplit("_", 1)[1]), label=label, issued_at=now
        )
        return new_event(data, source=source, tenant=self.tenant, subject=self.key_id, time=now)


def generate_key(tenant: str, scope: Scope) -> IssuedKey:
    if not TENANT_PATTERN.match(tenant):
        raise ValueError("a tenant is lowercase letters, digits and dashes (2 to 63)")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key_id = "k" + secrets.token_hex(8)
    return IssuedKey(key_id=key_id, tenant=tenant, scope=scope, key=f"{KEY_PREFIX}{key_id}_{secrets.token_hex(32)}")


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
            record = KeyRecord(data.key_id, data.tenant, data.scope, data.secret_sha256, data.label, data.issued_at)
            record.revoked_at = self.revoked_before_issued.pop(data.key_id, None)
            self.keys.setdefault(data.key_id, record)  # a key id is issued once; a replay changes nothing
        elif isinstance(data, ApiKeyRevoked):
            known = self.keys.get(data.key_id)
            if known is None:
                self.revoked_before_issued[data.key_id] = data.revoked_at
            elif known.tenant == data.tenant and known.revoked_at is None:
                known.revoked_at = data.revoked_at
        self._count()

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
        return Principal(tenant=record.tenant, key_id=record.key_id, scope=record.scope)

    async def follow(self, bootstrap_servers: str) -> None:
        """Read `billing.auth` from the beginning, set `loaded` once caught up, then keep following."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", client_id=f"{self.service}-keys"
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(AUTH.name, p) for p in range(AUTH.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
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
