"""Ingest throughput: usage posted over HTTP (authenticated, validated, stored, outboxed, relayed to
Kafka) against a bare aiokafka producer sending the same kind of messages to the same broker.

    .venv/bin/python bench/ingest.py [--events 50000] [--batch 500] [--concurrency 4] [--json]
                                     [--py-spy FILE]

It starts its own embedded PostgreSQL and Tansu broker, issues itself an API key (as
`billing keys issue` does) and runs usage-ingest as `billing up` runs it. The HTTP figure counts
an event only once the service's relay has published it (the broker acknowledged it). Not a test: it prints
figures; with `--json` the last line is one JSON object:

    http_events_per_s   events posted, stored and on the topic, per second of the HTTP run
    accepted_events_per_s  the same events, counting up to the last POST answered (relay not awaited)
    bare_events_per_s   the bare producer, same broker, same number of events, same compression as
                        the services (KAFKA_COMPRESSION, `compression`)
    ratio               http_events_per_s / bare_events_per_s
    bare_gzip_events_per_s, ratio_vs_bare_gzip  the bare producer with gzip (the services' codec before
                        zstd), and the ratio against it: the figure earlier runs reported as `ratio`
    cpu_s_per_1000      usage-ingest CPU seconds (user + system, relay included) per 1,000 events
    cpu_s_per_1000_by_process  the same for usage-ingest, PostgreSQL and the broker
    rss_mb              usage-ingest resident memory at the end of the run (all its processes)

`--py-spy FILE` records the service with py-spy during the HTTP run (collapsed stacks, for
flame graphs or `sort | uniq` style reading); py-spy must be installed in the virtualenv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaProducer
from process_cpu import CpuMeter, per_thousand

from billing_cli.platform import Platform, isolated_env
from billing_events import UsageRecorded, account_id, new_event, to_kafka
from billing_events.topics import USAGE
from billing_runtime.auth import generate_key, publish
from billing_runtime.config import CommonSettings

TENANT = "bench"
CUSTOMER = "bench-customer"


def records(n: int) -> list[dict[str, str]]:
    base = datetime(2026, 10, 1, tzinfo=UTC)
    return [
        {"id": f"r{i}", "customer_id": CUSTOMER, "product_code": "AZ-VM-D2", "quantity": "1.25", "timestamp": (base + timedelta(seconds=i)).isoformat()}
        for i in range(n)
    ]


async def post_all(url: str, headers: dict[str, str], bodies: list[bytes], concurrency: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while not queue.empty():
                body = queue.get_nowait()
                r = await client.post("/v1/usage", content=body, headers={**headers, "content-type": "application/json"})
                r.raise_for_status()
                if r.json()["accepted"] == 0:
                    raise SystemExit(f"a batch was not accepted: {r.text[:300]}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


PUBLISHED = 'billing_outbox_events_published_total{service="usage-ingest",topic="billing.usage"}'


def published(url: str) -> int:
    """Usage events the service's relay has published (the broker acknowledged them), from its
    metrics. Tansu's end offsets cannot be used: they stop at the last batch's base offset."""
    for line in httpx.get(url + "/metrics/", timeout=10).text.splitlines():
        if line.startswith(PUBLISHED):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def published_in_database(database_url: str) -> int:
    """The same count from the outbox table, for several worker processes (each has its own metrics)."""
    from sqlalchemy import text

    from billing_runtime.db import create_engine

    # A batch row (usage in batched content mode) counts its events (billing_runtime.lag does the same).
    query = text(
        "SELECT coalesce(sum(CASE WHEN headers->0->>1 = 'application/cloudevents-batch+json' THEN (headers->1->>1)::int ELSE 1 END), 0) "
        "FROM usage_ingest.outbox WHERE sent_at IS NOT NULL AND event_type = :type"
    )
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(query, {"type": UsageRecorded.event_type}) or 0)
    finally:
        await engine.dispose()


def wait_published(platform: Platform, url: str, workers: int, expected: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        count = published(url) if workers == 1 else asyncio.run(published_in_database(platform.database_url))
        if count >= expected:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} of {expected} events published to {USAGE.name} within {timeout:.0f}s")
        time.sleep(0.05)


async def bare_producer(bootstrap: str, n: int, compression: str) -> float:
    account = account_id(TENANT, CUSTOMER)
    messages = []
    base = datetime(2026, 10, 1, tzinfo=UTC)
    for i in range(n):
        data = UsageRecorded(
            record_id=f"b{i}", account_id=account, partner_id=TENANT, product_code="AZ-VM-D2", quantity="1.25", occurred_at=base + timedelta(seconds=i)
        )
        messages.append(to_kafka(new_event(data, source="bench", tenant=TENANT)))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        compression_type=None if compression == "none" else compression,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(USAGE.name, value=m.value, key=m.key, headers=m.headers) for m in messages]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def service_processes(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def wait_key_known(url: str, headers: dict[str, str], timeout: float = 60.0) -> None:
    """A service reads a new key from the key topic within moments; wait until this one works."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url + "/v1/customers", headers=headers, timeout=10)
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the bench's API key was not accepted: {r.status_code} {r.text[:200]}")
        time.sleep(0.2)


def start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--subprocesses", "--output", out, "--nonblocking"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = isolated_env("BILLING_USAGE_INGEST_PORT", AUTH_MODE="api_key", BILLING_USAGE_INGEST_WORKERS=str(args.workers))
    platform = Platform.throwaway("billing-bench-", env, quiet=args.json)
    spy: subprocess.Popen[bytes] | None = None
    try:
        platform._start_postgres()
        platform._start_kafka()
        platform.migrate(only=("usage-ingest",))
        from billing_runtime.kafka import ensure_topics

        asyncio.run(ensure_topics(platform.bootstrap))
        # Issued before the service starts, so it knows the key once it is ready.
        key = generate_key(TENANT, "write")
        asyncio.run(publish(platform.bootstrap, key.event(label="bench/ingest.py", now=datetime.now(UTC))))
        headers = {"Authorization": f"Bearer {key.key}"}
        platform.start_service("usage-ingest")
        platform.wait_ready("usage-ingest")
        url = platform.url("usage-ingest")
        wait_key_known(url, headers)
        customer = {"id": CUSTOMER, "name": "Bench", "billing_email": "b@example.com", "country": "IE", "currency": "EUR"}
        httpx.post(url + "/v1/customers", headers=headers, json={"records": [customer]}, timeout=30).raise_for_status()
        all_records = records(args.events)
        bodies = [json.dumps({"records": all_records[i : i + args.batch]}).encode() for i in range(0, args.events, args.batch)]

        service = service_processes(platform.processes["usage-ingest"].pid)
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in service)
        broker = platform.broker.process.pid if platform.broker and platform.broker.process else None
        meter = CpuMeter(services={"usage-ingest": service[0].pid}, pgdata=platform.state_dir / "pgdata", broker_pid=broker)
        if args.py_spy:
            spy = start_py_spy(service[0].pid, args.py_spy)
            time.sleep(1.0)
        started = time.perf_counter()
        asyncio.run(post_all(url, headers, bodies, args.concurrency))
        accepted_seconds = time.perf_counter() - started
        wait_published(platform, url, args.workers, args.events)
        http_seconds = time.perf_counter() - started
        cpu_service = sum(sum(p.cpu_times()[:2]) for p in service) - cpu_before
        spent = meter.spent()
        rss = sum(p.memory_info().rss for p in service)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            spy = None

        # The services' producer settings (billing_runtime.kafka.make_producer), compression included;
        # and gzip, the bare figure of earlier runs (the services compressed with gzip then).
        compression = getattr(CommonSettings(), "kafka_compression", "gzip")
        bare_seconds = asyncio.run(bare_producer(platform.bootstrap, args.events, compression))
        bare_gzip_seconds = asyncio.run(bare_producer(platform.bootstrap, args.events, "gzip"))
    finally:
        if spy is not None:
            spy.kill()
        platform.discard()  # its database and state folder too, however the run ended

    http_rate = args.events / http_seconds
    bare_rate = args.events / bare_seconds
    return {
        "events": args.events,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "compression": getattr(CommonSettings(), "kafka_compression", "gzip"),
        "http_seconds": round(http_seconds, 3),
        "accepted_seconds": round(accepted_seconds, 3),
        "bare_seconds": round(bare_seconds, 3),
        "http_events_per_s": round(http_rate, 1),
        "accepted_events_per_s": round(args.events / accepted_seconds, 1),
        "bare_events_per_s": round(bare_rate, 1),
        "ratio": round(http_rate / bare_rate, 3),
        "bare_gzip_events_per_s": round(args.events / bare_gzip_seconds, 1),
        "ratio_vs_bare_gzip": round(http_rate / (args.events / bare_gzip_seconds), 3),
        "cpu_s_per_1000": round(cpu_service / args.events * 1000, 4),
        "cpu_s_per_1000_by_process": per_thousand(spent, args.events),
        "rss_mb": round(rss / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes for usage-ingest")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--py-spy", metavar="FILE", help="record usage-ingest with py-spy during the HTTP run (collapsed stacks)")
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"events: {args.events:,} in batches of {args.batch}, {args.concurrency} concurrent clients, {args.workers} worker(s), on {os.cpu_count()} cores")
    print(
        f"HTTP ingest (accepted, stored, relayed to Kafka): {figures['http_events_per_s']:,.0f} events/s  "
        f"({figures['http_seconds']:.2f}s; all accepted after {figures['accepted_seconds']:.2f}s)"
    )
    print(f"bare aiokafka producer, same messages:            {figures['bare_events_per_s']:,.0f} events/s  ({figures['bare_seconds']:.2f}s)")
    print(f"ratio HTTP / bare: {figures['ratio']:.2f}")
    print(f"usage-ingest: {figures['cpu_s_per_1000']:.3f} CPU s per 1,000 events, {figures['rss_mb']:.0f} MB resident")
    print("CPU s per 1,000 events: " + ", ".join(f"{k} {v:.3f}" for k, v in figures["cpu_s_per_1000_by_process"].items()))


if __name__ == "__main__":
    main()
