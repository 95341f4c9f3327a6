"""Event-to-rated latency: usage posted to usage-ingest open loop (at a fixed rate, whatever the
responses do), measured from the start of each POST to the moment rating has applied the record
(it is in rating's usage projection, so the charges API includes it).

    .venv/bin/python bench/rating_latency.py [--rate 1000] [--seconds 60] [--batch N] [--connections 32] [--json]

The issue's goal: p99 < 0.5 s and nothing failed at 2,000 events/s; 5,000 reported too. Not a test:
it prints figures. The probe polls rating's table every 20 ms, so figures are rounded up to that
resolution. The client must be able to offer the rate on a busy machine: it posts batches (by
default rate / 20 records, so 20 POSTs a second, as a partner streaming usage would), and reports
what it offered (`offered_per_s`) and how far behind its schedule it fell (`client_late_ms`).
With `--json` the last line is one JSON object: `offered_per_s`, `p50_ms`, `p99_ms`, `max_ms`,
`failed`, `rated`, and `cpu_s_per_1000` (CPU seconds per 1,000 events of usage-ingest, rating,
PostgreSQL and the broker during the run).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from process_cpu import CpuMeter, per_thousand
from sqlalchemy import text

from billing_cli.platform import Platform, isolated_env
from billing_runtime.db import create_engine

TENANT = "bench-rating"
POLL_SECONDS = 0.02
PROBE_SLICE = 2000


async def run(
    url_ingest: str, url_rating: str, database_url: str, rate: int, seconds: float, batch: int, connections: int, on_start: Callable[[], None]
) -> Run:
    headers = {"X-Tenant-Id": TENANT}
    async with httpx.AsyncClient(timeout=30) as client:
        product = {"name": "Backup per GB", "quantity_rule": "usage_sum", "unit_price": "0.10", "currency": "EUR"}
        (await client.put(f"{url_rating}/v1/products/BKP-GB", headers=headers, json=product)).raise_for_status()
        customer = {"id": "bench-customer", "name": "Bench", "billing_email": "b@example.com", "country": "IE", "currency": "EUR"}
        (await client.post(f"{url_ingest}/v1/customers", headers=headers, json={"records": [customer]})).raise_for_status()
        # Warm up: rating's consumer joins its group first (seconds on Tansu); measure after.
        warm = {"id": "warm-up", "customer_id": "bench-customer", "product_code": "BKP-GB", "quantity": "1", "timestamp": datetime.now(UTC).isoformat()}
        (await client.post(f"{url_ingest}/v1/usage", headers=headers, json={"records": [warm]})).raise_for_status()
        engine = create_engine(database_url)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                async with engine.connect() as conn:
                    if await conn.scalar(text("SELECT count(*) FROM rating.usage_record WHERE seller_id = :t"), {"t": TENANT}):
                        break
                await asyncio.sleep(0.1)
        finally:
            await engine.dispose()

    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    failures = 0
    late = 0.0  # how far behind its schedule the sender fell at worst
    base = datetime.now(UTC) - timedelta(days=1)
    done = asyncio.Event()
    posting = {**headers, "content-type": "application/json"}

    def stamp(n: int) -> str:
        return (base + timedelta(microseconds=n)).isoformat()

    async def post(client: httpx.AsyncClient, first: int, ids: list[str]) -> None:
        nonlocal failures
        # One JSON body per POST, written straight to bytes: the client must offer the rate, so it
        # costs as little per record as it can (it shares the machine with what it measures).
        body = json.dumps(
            {
                "records": [
                    {"id": rid, "customer_id": "bench-customer", "product_code": "BKP-GB", "quantity": "1", "timestamp": stamp(first + i)}
                    for i, rid in enumerate(ids)
                ]
            }
        ).encode()
        started = time.perf_counter()
        for rid in ids:
            sent_at[rid] = started
        try:
            r = await client.post(f"{url_ingest}/v1/usage", headers=posting, content=body)
            r.raise_for_status()
        except httpx.HTTPError:
            failures += len(ids)
            for rid in ids:
                sent_at.pop(rid, None)

    async def probe() -> None:
        # A bare asyncpg connection: the probe must not be what delays the figures it takes. It
        # asks for the oldest pending records first, a slice at a time (one account's usage is
        # applied in order), and asks again at once while a slice comes back whole: the database
        # does not look up a growing backlog of ids every 20 ms.
        conn = await asyncpg.connect(_asyncpg_dsn(database_url))
        query = await conn.prepare("SELECT record_id FROM rating.usage_record WHERE seller_id = $1 AND record_id = ANY($2::text[])")
        try:
            while not (done.is_set() and not sent_at):
                pending = list(itertools.islice(sent_at, PROBE_SLICE))
                found = 0
                if pending:
                    rows = await query.fetch(TENANT, pending)
                    now = time.perf_counter()
                    found = len(rows)
                    for row in rows:
                        started = sent_at.pop(row[0], None)
                        if started is not None:
                            latencies.append(now - started)
                if found < PROBE_SLICE:
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            await conn.close()

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        prober = asyncio.create_task(probe())
        on_start()
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        n = 0
        run_id = uuid.uuid4().hex[:6]
        while time.perf_counter() - start < seconds:
            ids = [f"{run_id}-{n + i}" for i in range(batch)]
            tasks.append(asyncio.create_task(post(client, n, ids)))
            n += batch
            # Open loop: the next batch leaves on schedule, not when the last one is answered.
            delay = start + (n / rate) - time.perf_counter()
            late = max(late, -delay)
            await asyncio.sleep(max(0.0, delay))
        offered_seconds = time.perf_counter() - start
        await asyncio.gather(*tasks)
        done.set()
        try:
            await asyncio.wait_for(prober, timeout=120)
        except TimeoutError:
            prober.cancel()
    return Run(latencies, n, failures, offered_seconds, late)


@dataclass
class Run:
    latencies: list[float]
    sent: int
    failures: int
    offered_seconds: float
    late: float


_STAGES = """
SELECT
  percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM o.sent_at - o.created_at)) AS relayed,
  percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM i.applied_at - o.sent_at)) AS applied
FROM usage_ingest.outbox o JOIN rating.inbox i ON i.event_id = o.event_id  -- a batch row: its first event
WHERE o.event_type = 'billing.usage.recorded.v1'
"""


async def _stages(database_url: str) -> dict[str, Any]:
    """Where the time went, from the rows themselves: from the ingest transaction to the relay
    marking the event sent (`relayed`), and from there to rating's transaction that applied it
    (`applied`; both are transaction start times, so each is a lower bound); and the sessions the
    database opened since it started (a pool that churns connections shows here)."""
    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        row = await conn.fetchrow(_STAGES)
        sessions = await conn.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await conn.close()
    stages: dict[str, Any] = {name: [round(v * 1000, 1) for v in (row[name] or [0.0, 0.0])] for name in ("relayed", "applied")}
    return stages | {"db_sessions": sessions}


def _asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="events per second, open loop")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=0, help="records per POST (default: the rate / 20, from 10 to 500: 20 POSTs a second)")
    parser.add_argument("--connections", type=int, default=32, help="HTTP connections the client keeps open to usage-ingest")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--py-spy", metavar="PREFIX", help="profile usage-ingest and rating with py-spy into PREFIX.<service>")
    args = parser.parse_args()
    batch = args.batch or min(500, max(10, args.rate // 20))

    env = isolated_env("BILLING_USAGE_INGEST_PORT", "BILLING_RATING_PORT", AUTH_MODE="trusted_header")
    platform = Platform.throwaway("billing-bench-rating-", env, quiet=args.json)
    try:
        platform._start_postgres()
        platform._start_kafka()
        platform.migrate(only=("usage-ingest", "rating"))
        from billing_runtime.kafka import ensure_topics

        asyncio.run(ensure_topics(platform.bootstrap))
        for name in ("usage-ingest", "rating"):
            platform.start_service(name)
            platform.wait_ready(name)
        services = {name: platform.processes[name].pid for name in ("usage-ingest", "rating")}
        broker = platform.broker.process.pid if platform.broker and platform.broker.process else None
        meter: list[CpuMeter] = []
        spies: list[subprocess.Popen[bytes]] = []

        def started() -> None:
            meter.append(CpuMeter(services=services, pgdata=platform.state_dir / "pgdata", broker_pid=broker))
            if args.py_spy:
                spy = str(Path(sys.executable).parent / "py-spy")
                for name, pid in services.items():
                    out = f"{args.py_spy}.{name}"
                    spies.append(subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--output", out, "--nonblocking"]))

        outcome = asyncio.run(
            run(platform.url("usage-ingest"), platform.url("rating"), platform.database_url, args.rate, args.seconds, batch, args.connections, on_start=started)
        )
        spent = meter[0].spent()
        for spy_process in spies:
            spy_process.send_signal(signal.SIGINT)
            spy_process.wait(30)
        stages = asyncio.run(_stages(platform.database_url))
        client_cpu = sum(os.times()[:2])
    finally:
        platform.discard()  # its database and state folder too, however the run ended

    lat = outcome.latencies
    figures = {
        "rate": args.rate,
        "seconds": args.seconds,
        "batch": batch,
        "connections": args.connections,
        "cores": os.cpu_count(),
        "sent": outcome.sent,
        "offered_per_s": round(outcome.sent / outcome.offered_seconds, 1),
        "client_late_ms": round(outcome.late * 1000, 1),
        "failed": outcome.failures,
        "rated": len(lat),
        "p50_ms": round(percentile(lat, 0.50) * 1000, 1) if lat else None,
        "p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
        "max_ms": round(max(lat) * 1000, 1) if lat else None,
        "stages_ms": stages,
        "cpu_s_per_1000": per_thousand(spent, max(outcome.sent, 1)),
        "client_cpu_s": round(client_cpu, 2),
    }
    print(f"open loop: {args.rate:,} events/s for {args.seconds:.0f}s in POSTs of {batch}, on {os.cpu_count()} cores")
    print(f"offered {figures['offered_per_s']:,.0f} events/s (the sender fell {figures['client_late_ms']:.0f} ms behind its schedule at worst)")
    print(f"sent {outcome.sent:,}, failed {outcome.failures:,}, rated {len(lat):,}")
    if lat:
        print(
            f"POST → rated and queryable: p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, "
            f"max {figures['max_ms']:.0f} ms (probe resolution {POLL_SECONDS * 1000:.0f} ms; goal p99 < 500 ms)"
        )
    print("where the time went (p50/p99 ms): " + ", ".join(f"{k} {stages[k][0]:.0f}/{stages[k][1]:.0f}" for k in ("relayed", "applied")))
    print("CPU s per 1,000 events: " + ", ".join(f"{k} {v:.3f}" for k, v in figures["cpu_s_per_1000"].items()))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
