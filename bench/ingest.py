"""Ingest throughput: usage posted over HTTP (validated, stored, outboxed, relayed to Kafka)
against a bare aiokafka producer sending the same bytes to the same broker.

    .venv/bin/python bench/ingest.py [--events 50000] [--batch 500] [--concurrency 4]

Not a test: it prints figures. The HTTP figure counts an event only once it is on the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from billing_cli.platform import Platform
from billing_events import UsageRecorded, account_id, new_event, to_kafka
from billing_events.topics import USAGE
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port


def records(n: int, tenant_customer: str) -> list[dict[str, str]]:
    base = datetime(2026, 10, 1, tzinfo=UTC)
    return [
        {
            "id": f"r{i}",
            "customer_id": tenant_customer,
            "product_code": "AZ-VM-D2",
            "quantity": "1.25",
            "timestamp": (base + timedelta(seconds=i)).isoformat(),
        }
        for i in range(n)
    ]


async def post_all(url: str, tenant: str, bodies: list[bytes], concurrency: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"X-Tenant-Id": tenant, "content-type": "application/json"}

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while not queue.empty():
                body = queue.get_nowait()
                r = await client.post("/v1/usage", content=body, headers=headers)
                r.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def wait_relayed(database_url: str, expected: int) -> None:
    from usage_ingest.db import outbox

    engine = create_engine(database_url)
    try:
        while True:
            async with engine.connect() as conn:
                sent = await conn.scalar(
                    select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_not(None), outbox.c.event_type == UsageRecorded.event_type)
                )
            if (sent or 0) >= expected:
                return
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def bare_producer(bootstrap: str, tenant: str, n: int) -> float:
    account = account_id(tenant, "bench-customer")
    messages = []
    base = datetime(2026, 10, 1, tzinfo=UTC)
    for i in range(n):
        data = UsageRecorded(
            record_id=f"b{i}", account_id=account, partner_id=tenant, product_code="AZ-VM-D2", quantity="1.25", occurred_at=base + timedelta(seconds=i)
        )
        messages.append(to_kafka(new_event(data, source="bench", tenant=tenant)))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5, max_batch_size=1024 * 1024, compression_type="gzip"
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(USAGE.name, value=m.value, key=m.key, headers=m.headers) for m in messages]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes for usage-ingest")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    env = {
        **os.environ,
        "BILLING_KAFKA_PORT": str(free_port()),
        "BILLING_USAGE_INGEST_PORT": str(free_port()),
        "BILLING_USAGE_INGEST_WORKERS": str(args.workers),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    platform = Platform(state_dir=state, env=env, database_name=f"billing_bench_{uuid.uuid4().hex[:6]}", fresh_database=True)
    platform._start_postgres()
    platform._start_kafka()
    try:
        platform.migrate(only=("usage-ingest",))
        from billing_runtime.kafka import ensure_topics

        asyncio.run(ensure_topics(platform.bootstrap))
        platform.start_service("usage-ingest")
        platform.wait_ready("usage-ingest")
        url = platform.url("usage-ingest")
        tenant = "bench"
        httpx.post(
            url + "/v1/customers",
            headers={"X-Tenant-Id": tenant},
            json={"records": [{"id": "bench-customer", "name": "Bench", "billing_email": "b@example.com", "country": "IE", "currency": "EUR"}]},
        ).raise_for_status()
        all_records = records(args.events, "bench-customer")
        bodies = [json.dumps({"records": all_records[i : i + args.batch]}).encode() for i in range(0, args.events, args.batch)]

        root = psutil.Process(platform.processes["usage-ingest"].pid)
        service = [root, *root.children(recursive=True)]
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in service)
        started = time.perf_counter()
        asyncio.run(post_all(url, tenant, bodies, args.concurrency))
        accepted_at = time.perf_counter() - started
        asyncio.run(wait_relayed(platform.database_url, args.events))
        http_seconds = time.perf_counter() - started
        cpu_service = sum(sum(p.cpu_times()[:2]) for p in service) - cpu_before

        bare_seconds = asyncio.run(bare_producer(platform.bootstrap, tenant, args.events))
    finally:
        platform.stop()

    http_rate = args.events / http_seconds
    bare_rate = args.events / bare_seconds
    print(f"events: {args.events:,} in batches of {args.batch}, {args.concurrency} concurrent clients, {args.workers} worker(s), on {os.cpu_count()} cores")
    print(f"HTTP ingest (accepted, stored, relayed to Kafka): {http_rate:,.0f} events/s  ({http_seconds:.2f}s; all accepted after {accepted_at:.2f}s)")
    print(f"bare aiokafka producer, same bytes:               {bare_rate:,.0f} events/s  ({bare_seconds:.2f}s)")
    print(f"ratio HTTP / bare: {http_rate / bare_rate:.2f}")
    print(f"usage-ingest CPU: {cpu_service / args.events * 1000:.3f} s per 1,000 events")


if __name__ == "__main__":
    main()
