"""Backlog drain: how fast rating catches up on usage published while its consumer was stopped.

    .venv/bin/python bench/backlog.py [--events 100000] [--customers 1000] [--batch 1] [--json]

Rating runs as its own process (uvicorn) against the embedded Tansu and PostgreSQL. Customers and
their subscriptions are published first and rating applies them; then rating is stopped, `--events`
UsageRecorded events (spread over the customers, so over every partition of `billing.usage`) are
published, rating is started again, and the drain is timed from the moment it is ready (its
consumer has its partitions) until every record is in its usage projection.

Not a test: it prints figures; with `--json` the last line is one JSON object with
`drain_events_per_s`, `events`, `seconds`, `rss_mb` (rating's peak resident memory), and `cpu_s` /
`events_per_cpu_s` (rating's own CPU for the drain, PostgreSQL's not included: on a loaded machine
the rate is what the cores left give, this is what one free core would), `xact_commit` /
`xact_rollback` (what the database saw from rating's start to the end, the bench's probes included).
The issue's goal: >= 15,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaProducer
from process_cpu import CpuMeter, per_thousand
from sqlalchemy import text

from billing_cli.platform import Platform, isolated_env
from billing_events import (
    CloudEvent,
    KafkaMessage,
    SubscriptionOrdered,
    UsageRecorded,
    account_id,
    new_event,
    subscription_id,
    to_kafka,
    to_kafka_batch,
)
from billing_events.testing import make_customer
from billing_runtime.db import create_engine

TENANT = "bench-backlog"
PRODUCT = "BKP-GB"


def customers(n: int) -> list[CloudEvent[Any]]:
    events: list[CloudEvent[Any]] = []
    for i in range(n):
        external = f"c{i}"
        account = account_id(TENANT, external)
        events.append(
            new_event(
                make_customer(TENANT, external, name=f"Customer {i}", billing_email=f"ap{i}@example.com"),
                source="usage-ingest",
                tenant=TENANT,
            )
        )
        order = f"o{i}"
        events.append(
            new_event(
                SubscriptionOrdered(
                    subscription_id=subscription_id(TENANT, order),
                    order_id=order,
                    account_id=account,
                    partner_id=TENANT,
                    product_code=PRODUCT,
                    quantity=Decimal(1),
                    start_on=date(2026, 10, 1),
                    ordered_at=datetime(2026, 10, 1, tzinfo=UTC),
                ),
                source="usage-ingest",
                tenant=TENANT,
            )
        )
    return events


def usage(n: int, n_customers: int, run: str) -> list[CloudEvent[Any]]:
    base = datetime(2026, 10, 2, tzinfo=UTC)
    accounts = [account_id(TENANT, f"c{i}") for i in range(n_customers)]
    return [
        new_event(
            UsageRecorded(
                record_id=f"{run}-{i}",
                account_id=accounts[i % n_customers],
                partner_id=TENANT,
                product_code=PRODUCT,
                quantity=Decimal("1.25"),
                occurred_at=base + timedelta(seconds=i),
            ),
            source="usage-ingest",
            tenant=TENANT,
        )
        for i in range(n)
    ]


def messages(events: list[CloudEvent[Any]], batch: int) -> list[KafkaMessage]:
    """One message per event, or (`batch` > 1) batch messages of up to `batch` events of one
    account, in order, as usage-ingest's outbox writes them (billing_events.to_kafka_batch)."""
    if batch <= 1:
        return [to_kafka(e) for e in events]
    by_key: dict[str, list[CloudEvent[Any]]] = {}
    for event in events:
        by_key.setdefault(event.key, []).append(event)
    return [to_kafka_batch(run[i : i + batch]) for run in by_key.values() for i in range(0, len(run), batch)]


async def publish(bootstrap: str, events: list[CloudEvent[Any]], batch: int = 1) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        out = messages(events, batch)
        for start in range(0, len(out), 5000):
            futures = []
            for m in out[start : start + 5000]:
                futures.append(await producer.send(m.topic, value=m.value, key=m.key, headers=m.headers))
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count(database_url: str, sql: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(sql), {"t": TENANT}) or 0)
    finally:
        await engine.dispose()


async def transactions(database_url: str) -> tuple[int, int]:
    """Commits and rollbacks the database has seen (pg_stat_database), every session's."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"))).one()
            return int(row[0]), int(row[1])
    finally:
        await engine.dispose()


async def wait_for(database_url: str, sql: str, expected: int, timeout: float, on_poll: Any = None) -> tuple[float, int]:
    """Poll until `sql` counts `expected`; the time it first did and the count at the first poll."""
    engine = create_engine(database_url)
    first: int | None = None
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with engine.connect() as conn:
                seen = int(await conn.scalar(text(sql), {"t": TENANT}) or 0)
            now = time.perf_counter()
            if first is None:
                first = seen
            if on_poll is not None:
                on_poll()
            if seen >= expected:
                return now, first
            if time.monotonic() > deadline:
                raise SystemExit(f"only {seen:,} of {expected:,} after {timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


def wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"rating not ready after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="usage events in the backlog")
    parser.add_argument("--customers", type=int, default=1000, help="customers, each with one subscription")
    parser.add_argument("--batch", type=int, default=1, help="events per message: >1 publishes batch messages of one account's usage, as usage-ingest does")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on the drain after this many seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--workers", type=int, default=1, help="rating processes (uvicorn workers: consumers in one group, sharing the partitions)")
    parser.add_argument("--py-spy", metavar="FILE", help="profile rating during the drain with py-spy (installed apart) into FILE (raw collapsed stacks)")
    args = parser.parse_args()

    env = isolated_env("BILLING_RATING_PORT", AUTH_MODE="trusted_header", BILLING_RATING_WORKERS=str(args.workers))
    platform = Platform.throwaway("billing-bench-backlog-", env, quiet=args.json)
    peak_rss = 0.0
    try:
        platform._start_postgres()
        platform._start_kafka()
        platform.migrate(only=("rating",))
        from billing_runtime.kafka import ensure_topics

        asyncio.run(ensure_topics(platform.bootstrap))
        url = platform.url("rating")
        platform.start_service("rating")
        platform.wait_ready("rating")
        product = {"name": "Backup per GB", "quantity_rule": "usage_sum", "unit_price": "0.10", "currency": "EUR"}
        httpx.put(f"{url}/v1/products/{PRODUCT}", headers={"X-Tenant-Id": TENANT}, json=product, timeout=30).raise_for_status()
        asyncio.run(publish(platform.bootstrap, customers(args.customers)))
        asyncio.run(wait_for(platform.database_url, "SELECT count(*) FROM rating.subscription WHERE seller_id = :t", args.customers, 600))
        platform.stop_service("rating")  # leaves its group with its offsets committed

        backlog = usage(args.events, args.customers, uuid.uuid4().hex[:6])
        started = time.perf_counter()
        asyncio.run(publish(platform.bootstrap, backlog, args.batch))
        publish_s = time.perf_counter() - started

        xacts_before = asyncio.run(transactions(platform.database_url))
        platform.start_service("rating")
        process = psutil.Process(platform.processes["rating"].pid)
        wait_ready(url)
        ready_at = time.perf_counter()
        cpu_at_ready = sum(process.cpu_times()[:2])
        broker = platform.broker.process.pid if platform.broker and platform.broker.process else None
        meter = CpuMeter(services={"rating": process.pid}, pgdata=platform.state_dir / "pgdata", broker_pid=broker)
        profiler = None
        if args.py_spy:
            spy = str(Path(sys.executable).parent / "py-spy")
            command = [spy, "record", "--pid", str(process.pid), "--format", "raw", "--rate", "200", "--output", args.py_spy, "--nonblocking"]
            profiler = subprocess.Popen(command)

        def sample() -> None:
            nonlocal peak_rss
            try:
                peak_rss = max(peak_rss, sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 1e6)
            except psutil.Error:
                pass

        done_at, at_ready = asyncio.run(
            wait_for(platform.database_url, "SELECT count(*) FROM rating.usage_record WHERE seller_id = :t", args.events, args.timeout, sample)
        )
        spent = meter.spent()
        cpu_s = spent["rating"] if args.workers > 1 else sum(process.cpu_times()[:2]) - cpu_at_ready
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        time.sleep(1.0)  # the statistics collector lags a little
        xacts = [a - b for a, b in zip(asyncio.run(transactions(platform.database_url)), xacts_before, strict=True)]
    finally:
        platform.discard()  # its database and state folder too, however the run ended

    seconds = done_at - ready_at
    drained = args.events - at_ready
    rate = drained / seconds if seconds > 0 else float("inf")
    print(f"published {args.events:,} usage events for {args.customers:,} subscriptions in {publish_s:.1f} s, on {os.cpu_count()} cores")
    print(
        f"rating drained {drained:,} in {seconds:.2f} s after it was ready ({at_ready:,} already applied by then): "
        f"{rate:,.0f} events/s (goal >= 15,000/s); peak RSS {peak_rss:.0f} MB"
    )
    print(
        f"rating used {cpu_s:.1f} s of CPU for the drain: {cpu_s / drained * 1e6:.0f} µs per event, "
        f"{drained / cpu_s if cpu_s else float('inf'):,.0f} events per CPU second (what one free core would drain)"
    )
    print(f"the database saw {xacts[0]:,} commits and {xacts[1]:,} rollbacks from rating's start to the end of the drain (the bench's own probes included)")
    if args.json:
        figures = {"drain_events_per_s": round(rate, 1), "events": args.events, "seconds": round(seconds, 3), "rss_mb": round(peak_rss, 1)}
        figures |= {"cpu_s": round(cpu_s, 2), "events_per_cpu_s": round(drained / cpu_s, 1) if cpu_s else None}
        figures |= {"cpu_s_per_1000": per_thousand(spent, drained)}
        figures |= {"already_applied_when_ready": at_ready, "xact_commit": xacts[0], "xact_rollback": xacts[1]}
        print(json.dumps(figures | {"publish_s": round(publish_s, 2), "customers": args.customers, "workers": args.workers}))


if __name__ == "__main__":
    main()
