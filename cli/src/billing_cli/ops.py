"""Operator tasks against a running platform: API keys, bill runs, consumer lag, dead letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from billing_events.topics import ALL_TOPICS, DEAD_LETTER
from billing_runtime.auth import IssuedKey, KeyRecord, Scope, issue, parse_key, read_keys, registry_keys, revoke
from billing_runtime.kafka import read_from_start


def _with_engine(database_url: str, work: Callable[[Any], Any]) -> Any:
    from billing_runtime.db import create_engine

    async def run() -> Any:
        engine = create_engine(database_url, pool_size=1)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def issue_key(bootstrap: str, database_url: str, tenant: str, scope: Scope, label: str | None) -> IssuedKey:
    """A new key: its row in the key table (the source of truth), then its event on `billing.auth`."""
    issued: IssuedKey = _with_engine(database_url, lambda engine: issue(engine, bootstrap, tenant, scope, label=label, now=datetime.now(UTC)))
    return issued


def list_keys(database_url: str) -> list[KeyRecord]:
    async def read(engine: Any) -> list[KeyRecord]:
        async with engine.connect() as conn:
            return await registry_keys(conn)

    return sorted(_with_engine(database_url, read), key=lambda k: (k.tenant, k.issued_at))


def revoke_key(bootstrap: str, database_url: str, key_id: str, reason: str | None) -> KeyRecord:
    known: KeyRecord = _with_engine(database_url, lambda engine: revoke(engine, bootstrap, key_id, reason=reason, now=datetime.now(UTC)))
    return known


def key_tenant(bootstrap: str, key: str, database_url: str | None = None) -> str | None:
    """The tenant of a key: from the key table when DATABASE_URL is known, else from the topic."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    if database_url:
        found = [k for k in list_keys(database_url) if k.key_id == parsed[0]]
        return found[0].tenant if found else None
    known = asyncio.run(read_keys(bootstrap)).keys.get(parsed[0])
    return known.tenant if known else None


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class PlatformLag:
    service: str
    topic: str
    published: int  # outbox rows of the types the service consumes, on the topic (within OUTBOX_RETENTION_DAYS)
    lag: int  # of those, not in the service's inbox yet

    @property
    def applied(self) -> int:
        return self.published - self.lag


async def platform_lag(database_url: str, bootstrap: str) -> list[PlatformLag]:
    """Per consuming service and topic: events published by the outboxes, applied by its inbox,
    and the difference (right on any broker: the broker's offsets are not used)."""
    import importlib

    from sqlalchemy.ext.asyncio import AsyncEngine

    from billing_cli.platform import SERVICES
    from billing_runtime.db import create_engine
    from billing_runtime.lag import LagMeter

    meters: list[tuple[LagMeter, set[str]]] = []
    for spec in SERVICES:
        settings = importlib.import_module(f"{spec.package}.config").Settings(database_url=database_url, kafka_bootstrap_servers=bootstrap)
        runtime = importlib.import_module(f"{spec.package}.main").build(settings).state.runtime
        engine: AsyncEngine = runtime.engine
        await engine.dispose()  # never connected: only its routes and inbox table are wanted
        if runtime.routes:
            topics = {route.model.topic.name for route in runtime.routes.values()}
            meters.append((LagMeter(runtime.name, runtime.inbox_table, list(runtime.routes)), topics))
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            from sqlalchemy import text

            from billing_cli.errors import NotMigrated

            inboxes = [f"{meter.inbox.schema}.{meter.inbox.name}" for meter, _ in meters]
            absent = [t for t in inboxes if await conn.scalar(text("SELECT to_regclass(:t)"), {"t": t}) is None]
            if absent:  # an unmigrated database would read as "no lag"
                raise NotMigrated(f"no {', '.join(absent)}")
            rows: list[PlatformLag] = []
            for meter, topics in meters:
                found = {r.topic: r for r in await meter.measure(conn)}
                for topic in sorted(topics):  # every topic the service reads, 0 when nothing was published
                    r = found.get(topic)
                    rows.append(PlatformLag(meter.service, topic, r.published if r else 0, r.lag if r else 0))
            return rows
    finally:
        await engine.dispose()


async def consumer_lag(bootstrap: str) -> list[Lag]:
    """Per consumer group and partition, as the broker reports it: the committed offset, the log
    end, the difference. The embedded Tansu reports wrong end offsets: see `platform_lag`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="billing-lag")
    await admin.start()
    try:
        groups = sorted({g[0] for g in await admin.list_consumer_groups()})
    finally:
        await admin.close()
    partitions = [TopicPartition(t.name, p) for t in ALL_TOPICS for p in range(t.partitions)]
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await reader.start()
    try:
        ends = await reader.end_offsets(partitions)
        rows: list[Lag] = []
        for group in groups:
            # The committed offsets through a consumer of the group that joins nothing (Tansu
            # answers the consumer's OffsetFetch, not the admin client's newer version).
            member = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await member.start()
            try:
                for tp in partitions:
                    committed = await member.committed(tp)
                    if committed is not None and committed >= 0:
                        rows.append(Lag(group, tp.topic, tp.partition, committed, ends[tp]))
            finally:
                await member.stop()
        return rows
    finally:
        await reader.stop()


async def dead_letters(bootstrap: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` dead letters, with their `dlq_*` headers and the event's type and id."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        ends = await read_from_start(consumer, DEAD_LETTER)
        found: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    headers = {name: value.decode(errors="replace") for name, value in message.headers or []}
                    found.append(
                        {
                            "at": datetime.fromtimestamp(message.timestamp / 1000, UTC).isoformat(timespec="seconds"),
                            "service": headers.get("dlq_service", ""),
                            "from": f"{headers.get('dlq_topic', '?')}[{headers.get('dlq_partition', '?')}]@{headers.get('dlq_offset', '?')}",
                            "type": headers.get("ce_type", ""),
                            "id": headers.get("ce_id", ""),
                            "code": headers.get("dlq_code", ""),
                            "error": headers.get("dlq_error", ""),
                        }
                    )
        return found[-limit:]
    finally:
        await consumer.stop()


def auth_headers(tenant: str, api_key: str | None) -> dict[str, str]:
    """An API key when given; the tenant header too, which only a trusted-header deployment reads."""
    headers = {"X-Tenant-Id": tenant}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def bill_run(
    rating_url: str,
    invoicing_url: str,
    seller: str,
    period: str,
    headers: dict[str, str],
    progress: Callable[[int, int], None],
    timeout: float = 300.0,
) -> tuple[dict[str, Any], int]:
    """Close `period` for `seller` at rating, then follow invoicing until every buyer's invoice is
    issued, reporting `progress(issued, buyers)`. Returns the bill run and the invoices seen."""
    with httpx.Client(timeout=60, headers=headers) as http:
        r = http.post(f"{rating_url}/v1/bill-runs", json={"period": period}, headers={"Idempotency-Key": f"bill-run-{seller}-{period}"})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"rating refused the bill run: {r.status_code} {r.text[:500]}")
        run: dict[str, Any] = r.json()
        buyers = int(run["buyers"])
        deadline = time.monotonic() + timeout
        issued = 0
        while True:
            issued = _count_invoices(http, invoicing_url, period)
            progress(min(issued, buyers), buyers)
            if issued >= buyers:
                return run, issued
            if time.monotonic() > deadline:
                raise TimeoutError(f"{issued} of {buyers} invoices issued after {timeout:.0f}s")
            time.sleep(0.5)


def _count_invoices(http: httpx.Client, invoicing_url: str, period: str) -> int:
    count, cursor = 0, None
    while True:
        params: dict[str, Any] = {"period": period, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        r = http.get(f"{invoicing_url}/v1/invoices", params=params)
        r.raise_for_status()
        body = r.json()
        count += len(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return count
