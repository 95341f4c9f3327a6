"""Event-to-rated latency: usage posted to usage-ingest open loop (at a fixed rate, whatever the
responses do), measured from the start of each POST to the moment rating has applied the record
(it is in rating's usage projection, so the charges API includes it).

    .venv/bin/python bench/rating_latency.py [--rate 1000] [--seconds 60] [--batch 10]

The issue's goal: p99 < 0.5 s at 1k and 5k events/s. Not a test: it prints figures. The probe
polls rating's table every 20 ms, so figures are rounded up to that resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

from billing_cli.platform import Platform
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port

TENANT = "bench-rating"
POLL_SECONDS = 0.02


async def run(url_ingest: str, url_rating: str, database_url: str, rate: int, seconds: float, batch: int) -> tuple[list[float], int, int]:
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
    base = datetime.now(UTC) - timedelta(days=1)
    done = asyncio.Event()

    async def post(client: httpx.AsyncClient, ids: list[str]) -> None:
        nonlocal failures
        records = [
            {"id": rid, "customer_id": "bench-customer", "product_code": "BKP-GB", "quantity": "1", "timestamp": (base + timedelta(microseconds=i)).isoformat()}
            for i, rid in enumerate(ids)
        ]
        started = time.perf_counter()
        for rid in ids:
            sent_at[rid] = started
        try:
            r = await client.post(f"{url_ingest}/v1/usage", headers=headers, json={"records": records})
            r.raise_for_status()
        except httpx.HTTPError:
            failures += len(ids)
            for rid in ids:
                sent_at.pop(rid, None)

    async def probe() -> None:
        engine = create_engine(database_url)
        try:
            while not (done.is_set() and not sent_at):
                pending = list(sent_at)
                if pending:
                    async with engine.connect() as conn:
                        rows = await conn.execute(
                            text("SELECT record_id FROM rating.usage_record WHERE seller_id = :t AND record_id = ANY(:ids)"), {"t": TENANT, "ids": pending}
                        )
                        now = time.perf_counter()
                        for (rid,) in rows:
                            started = sent_at.pop(rid, None)
                            if started is not None:
                                latencies.append(now - started)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await engine.dispose()

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        prober = asyncio.create_task(probe())
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        n = 0
        run_id = uuid.uuid4().hex[:6]
        while time.perf_counter() - start < seconds:
            ids = [f"{run_id}-{n + i}" for i in range(batch)]
            n += batch
            tasks.append(asyncio.create_task(post(client, ids)))
            # Open loop: the next batch leaves on schedule, not when the last one is answered.
            await asyncio.sleep(max(0.0, start + (n / rate) - time.perf_counter()))
        await asyncio.gather(*tasks)
        done.set()
        try:
            await asyncio.wait_for(prober, timeout=120)
        except TimeoutError:
            prober.cancel()
    return latencies, n, failures


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="events per second, open loop")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=10, help="records per POST")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="billing-bench-rating-"))
    env = {
        **os.environ,
        "AUTH_MODE": "trusted_header",
        "BILLING_KAFKA_PORT": str(free_port()),
        "BILLING_USAGE_INGEST_PORT": str(free_port()),
        "BILLING_RATING_PORT": str(free_port()),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    platform = Platform(state_dir=state, env=env, database_name=f"billing_bench_{uuid.uuid4().hex[:6]}", fresh_database=True)
    platform._start_postgres()
    platform._start_kafka()
    try:
        platform.migrate(only=("usage-ingest", "rating"))
        from billing_runtime.kafka import ensure_topics

        asyncio.run(ensure_topics(platform.bootstrap))
        for name in ("usage-ingest", "rating"):
            platform.start_service(name)
            platform.wait_ready(name)
        latencies, sent, failures = asyncio.run(
            run(platform.url("usage-ingest"), platform.url("rating"), platform.database_url, args.rate, args.seconds, args.batch)
        )
    finally:
        platform.stop()

    print(f"open loop: {args.rate:,} events/s for {args.seconds:.0f}s in POSTs of {args.batch}, on {os.cpu_count()} cores")
    print(f"sent {sent:,}, failed {failures:,}, rated {len(latencies):,}")
    if latencies:
        print(f"POST → rated and queryable: p50 {percentile(latencies, 0.50) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms (probe resolution {POLL_SECONDS * 1000:.0f} ms; goal p99 < 500 ms)")


if __name__ == "__main__":
    main()
