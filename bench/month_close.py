"""Month close end to end: a seller's customers and orders posted over HTTP to usage-ingest, the
period closed with `POST /v1/bill-runs` on rating, `PeriodClosed` over Kafka to invoicing, and the
clock stopped when the last `InvoiceIssued` is on `billing.invoices`. Then the same bill run again:
it must write nothing.

    .venv/bin/python bench/month_close.py [--customers 10000] [--subscriptions 20] [--sellers 1] [--json]

Not a test: it prints figures (with --json, one JSON object on the last line). Runs the real
services as separate processes on embedded servers (PostgreSQL, Tansu), as `billing up` does, with
API keys it issues itself. By default only the services on the bill run's path run (usage-ingest,
rating, invoicing); `--all-services` starts the whole platform (payments, dunning and notify then
follow the invoices: collection attempts, cases, 10,000 emails with their PDFs).

Phases, each timed (`phases`, seconds): posting (customers and orders over HTTP), catch-up (until
rating knows every subscription and invoicing every buyer: the bill run rates what rating has
seen), then from the bill run's POST: `close` (the POST's answer: rating's part), `periods_sent`
(the last PeriodClosed published by rating's relay), `periods_applied` (the last one applied by
invoicing's consumer), `invoices` (the last InvoiceIssued on the topic) and, with
`--all-services`, `<service>_applied` (the last InvoiceIssued applied by payments, dunning and
notify). The marks come from the bench's clock and the services' outbox `sent_at` and inbox
`applied_at` (the applying transaction's start). `seconds` is the POST to the last invoice,
`close_seconds`, `transport_seconds` (close → last PeriodClosed sent) and `invoicing_seconds`
(close → last invoice) its parts, `following_seconds` (last invoice → every follower's last
apply). `cpu_s` is each service's CPU from the POST until everything followed (`posting_cpu_s`:
over posting and catch-up), `cpu_ms_per_invoice` the same per invoice, `rss_mb` its peak resident
memory over the whole run (every process of the service: invoicing's rendering processes too;
`rss_main_mb`: its own process alone; `rss_workers_mb`: the sum over its other processes, for
invoicing its rendering processes). A sum of RSS counts the pages the processes share (the
interpreter's and C libraries' code, about 35 MB each) once per process: `pss_mb` is the peak of
the processes' proportional set sizes summed (a shared page divided among those that map it),
`pss_main_mb` and `pss_workers_mb` the same split. Each is its own peak over the run (sampled
every 0.5 s), so the parts' peaks need not add up to the whole's. `workers_max`: the most processes
beside its own that a service had at once (invoicing: rendering processes; 0 when it rendered nothing).
`pdfs_at_last_invoice` and `pdfs_at_end`: invoices' PDFs invoicing had stored (rendered ahead) when
the last invoice was seen and when the run ended (after the re-run).
`rerun_rows_written`: rows added to rating's and invoicing's tables by the second run (every table
but `audit_log`, which records the request itself, and the rendered documents, which invoicing's
background renderer keeps adding for the first run's invoices); `rerun_rows_by_table` names them.

`--sellers N` shares the customers among N sellers (customer i is seller i mod N's), each closing
its own period at the same time, as a distributor's partners do. On main before rating's close was
reworked, one seller with more than 32,767 subscriptions fails the close (asyncpg's parameter limit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from billing_cli.platform import SANDBOXES, SERVICES, Platform, isolated_env
from billing_events import InvoiceIssued, PeriodClosed
from billing_events.topics import INVOICES
from billing_runtime.auth import generate_key, publish
from billing_runtime.db import create_engine
from billing_runtime.kafka import ensure_topics

SELLER = "bench-month-close"  # the seller, or with --sellers N: bench-month-close-0 … N-1
PATH_SERVICES = ("usage-ingest", "rating", "invoicing")
FOLLOWERS = ("payments", "dunning", "notify")  # consume InvoiceIssued (with --all-services)
# An Irish seller; buyers at home, in Germany with a VAT id (reverse charge) and French consumers (OSS).
BUYER_KINDS = (("IE", True, None), ("DE", True, "DE136695976"), ("FR", False, None))
BATCH = 1000  # records per POST: usage-ingest's limit


def last_month(today: date) -> tuple[str, date]:
    first = today.replace(day=1) - timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}", first.replace(day=1)


class Sampler:
    """Peak RSS and CPU time of each service's process group (uvicorn and any workers), from /proc."""

    def __init__(self, platform: Platform, names: tuple[str, ...]) -> None:
        self.platform = platform
        self.names = names
        self.peak_kb: dict[str, int] = dict.fromkeys(names, 0)
        self.peak_main_kb: dict[str, int] = dict.fromkeys(names, 0)  # the service's own process, without its workers
        self.peak_pss_kb: dict[str, int] = dict.fromkeys(names, 0)  # every process, shared pages divided among them
        self.peak_workers_kb: dict[str, int] = dict.fromkeys(names, 0)  # its processes but its own (invoicing's rendering processes)
        self.peak_main_pss_kb: dict[str, int] = dict.fromkeys(names, 0)
        self.peak_workers_pss_kb: dict[str, int] = dict.fromkeys(names, 0)
        self.workers_max: dict[str, int] = dict.fromkeys(names, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _members(self, name: str) -> list[int]:
        process = self.platform.processes.get(name)
        if process is None:
            return []
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    fields = stat[stat.rindex(")") + 2 :].split()
                    if int(fields[2]) == process.pid:  # process group id: the service was started in its own session
                        members.append(int(entry))
        return members

    @staticmethod
    def _field_kb(pid: int, path: str, field: str) -> int:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1])
        return 0

    def sample(self, name: str) -> None:
        """One look at a service's processes: its own and the others (workers) apart, RSS and PSS."""
        process = self.platform.processes.get(name)
        own = process.pid if process is not None else None
        members = self._members(name)
        rss = {pid: self._field_kb(pid, "status", "VmRSS:") for pid in members}
        pss = {pid: self._field_kb(pid, "smaps_rollup", "Pss:") for pid in members}
        workers = [pid for pid in members if pid != own and rss[pid]]  # a zombie has no RSS
        self.peak_kb[name] = max(self.peak_kb[name], sum(rss.values()))
        self.peak_main_kb[name] = max(self.peak_main_kb[name], rss.get(own, 0) if own is not None else 0)
        self.peak_pss_kb[name] = max(self.peak_pss_kb[name], sum(pss.values()))
        self.peak_main_pss_kb[name] = max(self.peak_main_pss_kb[name], pss.get(own, 0) if own is not None else 0)
        self.peak_workers_kb[name] = max(self.peak_workers_kb[name], sum(rss[p] for p in workers))
        self.peak_workers_pss_kb[name] = max(self.peak_workers_pss_kb[name], sum(pss[p] for p in workers))
        self.workers_max[name] = max(self.workers_max[name], len(workers))

    def cpu_s(self, name: str) -> float:
        ticks = 0
        for pid in self._members(name):
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.names:
                self.sample(name)
            self._stop.wait(0.5)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        return {name: round(kb / 1024, 1) for name, kb in self.peak_kb.items()}


class InvoiceWatch:
    """Counts the seller's InvoiceIssued events on `billing.invoices` from where the topic ends now."""

    def __init__(self, bootstrap: str, sellers: list[str]) -> None:
        self.bootstrap = bootstrap
        self.sellers = set(sellers)
        self.invoices: set[str] = set()
        self.lines = 0
        self.last_at = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="bench-month-close")
        await consumer.start()
        partitions = consumer.partitions_for_topic(INVOICES.name) or set()
        from aiokafka import TopicPartition

        assigned = [TopicPartition(INVOICES.name, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)  # resolve the end now, before the bill run publishes anything
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for messages in batches.values():
                for m in messages:
                    headers = {k: v.decode() for k, v in (m.headers or [])}
                    if headers.get("ce_type") != InvoiceIssued.event_type or headers.get("ce_tenant") not in self.sellers:
                        continue
                    subject = headers.get("ce_subject", "")
                    if subject not in self.invoices:
                        self.invoices.add(subject)
                        self.lines += len(json.loads(m.value or b"{}").get("lines", []))
                        self.last_at = time.perf_counter()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def wait_progress(what: str, probe: Any, expected: int, stall_s: float, say: Any) -> None:
    """Wait until `probe()` reaches `expected`, telling how far along it is; give up only when it
    has not moved for `stall_s` seconds."""
    last, moved_at, told_at = -1, time.monotonic(), 0.0
    while True:
        now_count = await probe()
        now = time.monotonic()
        if now_count != last:
            last, moved_at = now_count, now
        if now_count >= expected:
            return
        if now - moved_at > stall_s:
            raise SystemExit(f"gave up waiting for {what}: {now_count:,}/{expected:,}, no progress for {stall_s:.0f}s")
        if now - told_at > 10:
            say(f"  waiting for {what}: {now_count:,}/{expected:,}")
            told_at = now
        await asyncio.sleep(0.25)


# Written in the background for the first run's invoices (documents rendered ahead), not by a re-run.
NOT_RERUN_TABLES = ("audit_log", "document")


async def table_rows(engine: Any) -> dict[str, int]:
    """Rows in every table of rating and invoicing, but those in NOT_RERUN_TABLES."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_schema IN ('rating', 'invoicing') AND table_type = 'BASE TABLE' AND NOT table_name = ANY(:skip)"
                ),
                {"skip": list(NOT_RERUN_TABLES)},
            )
        ).all()
        return {f"{schema}.{table}": int(await conn.scalar(text(f'SELECT count(*) FROM "{schema}"."{table}"')) or 0) for schema, table in tables}


async def epoch(engine: Any, sql: str) -> float | None:
    """A timestamp the services wrote (an outbox's `sent_at`, an inbox's `applied_at`), as epoch seconds."""
    async with engine.connect() as conn:
        value = await conn.scalar(text(f"SELECT extract(epoch FROM ({sql}))"))
        return float(value) if value is not None else None


def seller_ids(n: int) -> list[str]:
    return [SELLER] if n == 1 else [f"{SELLER}-{s}" for s in range(n)]


async def run(platform: Platform, keys: dict[str, str], args: argparse.Namespace, sampler: Sampler, say: Any) -> dict[str, Any]:
    period, start = last_month(datetime.now(UTC).date())
    sellers = list(keys)
    url = platform.url
    result: dict[str, Any] = {"customers": args.customers, "subscriptions": args.subscriptions, "sellers": len(sellers), "period": period}
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def call(method: str, service: str, path: str, body: Any, seller: str, ok: tuple[int, ...] = (200, 201)) -> Any:
            while True:
                r = await client.request(method, url(service) + path, json=body, headers={"Authorization": f"Bearer {keys[seller]}"})
                if r.status_code == 429:  # the per-key rate limit: wait as told
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                if r.status_code == 401 and r.json().get("code") == "api_key_invalid":
                    await asyncio.sleep(0.2)  # a service reads a new key within moments
                    continue
                if r.status_code not in ok:
                    raise SystemExit(f"{method} {service}{path} → {r.status_code}: {r.text[:500]}")
                return r.json()

        seller = {"name": "Month Close Ltd", "country": "IE", "vat_id": "IE6388047V", "invoice_prefix": "MC", "due_rule": {"net_days": 14}}
        products = [f"SKU-{j:02d}" for j in range(args.subscriptions)]
        for tenant in sellers:
            await call("PUT", "invoicing", "/v1/seller", seller, tenant)
            for code in products:
                product = {
                    "name": f"Sub {code}",
                    "unit_price": "20.60",
                    "currency": "EUR",
                    "description": None,
                    "category": None,
                    "quantity_rule": "contracted",
                }
                await call("PUT", "rating", f"/v1/products/{code}", product, tenant)

        posting = time.perf_counter()
        cpu_posting = {name: sampler.cpu_s(name) for name in sampler.names}
        customers = []
        for i in range(args.customers):
            country, business, vat_id = BUYER_KINDS[i % len(BUYER_KINDS)]
            customers.append(
                {
                    "id": f"c{i}",
                    "name": f"Customer {i}",
                    "billing_email": f"c{i}@example.com",
                    "country": country,
                    "currency": "EUR",
                    "business": business,
                    "vat_id": vat_id,
                }
            )
        orders = [
            {"id": f"o{i}-{j}", "customer_id": f"c{i}", "product_code": code, "quantity": str(1 + (i + j) % 7), "start_date": start.isoformat()}
            for i in range(args.customers)
            for j, code in enumerate(products)
        ]
        gate = asyncio.Semaphore(args.http_concurrency)

        async def post(path: str, records: list[dict[str, Any]], tenant: str) -> None:
            async with gate:
                while True:
                    answer = await call("POST", "usage-ingest", path, {"records": records}, tenant)
                    refused = [r for r in answer["results"] if r["status"] not in ("accepted", "duplicate")]
                    # usage-ingest hears of the products a moment after rating stored them: post again.
                    if refused and all(r["code"] == "unknown_product" for r in refused):
                        await asyncio.sleep(0.2)
                        continue
                    if refused:
                        raise SystemExit(f"{path}: {refused[:3]}")
                    return

        def of(records: list[dict[str, Any]], s: int) -> list[dict[str, Any]]:
            # Customer i is seller i mod N's.
            return [r for r in records if int(str(r.get("customer_id") or r["id"])[1:]) % len(sellers) == s]

        for path, records in (("/v1/customers", customers), ("/v1/orders", orders)):
            mine = {tenant: of(records, s) for s, tenant in enumerate(sellers)}
            await asyncio.gather(*(post(path, rs[i : i + BATCH], t) for t, rs in mine.items() for i in range(0, len(rs), BATCH)))
        result["post_seconds"] = round(time.perf_counter() - posting, 2)
        say(f"posted {len(customers):,} customers and {len(orders):,} orders in {result['post_seconds']}s")

        engine = create_engine(platform.database_url)
        try:

            async def count(sql: str) -> int:
                async with engine.connect() as conn:
                    return int(await conn.scalar(text(sql), {"sellers": sellers}) or 0)

            catching_up = time.perf_counter()
            await wait_progress(
                "rating's subscriptions",
                lambda: count("SELECT count(*) FROM rating.subscription WHERE seller_id = ANY(:sellers)"),
                len(orders),
                args.stall,
                say,
            )
            await wait_progress(
                "invoicing's buyers", lambda: count("SELECT count(*) FROM invoicing.buyer WHERE partner_id = ANY(:sellers)"), len(customers), args.stall, say
            )
            result["catch_up_seconds"] = round(time.perf_counter() - catching_up, 2)
            say(f"rating and invoicing caught up in {result['catch_up_seconds']}s")

            watch = InvoiceWatch(platform.bootstrap, sellers)
            await watch.start()
            try:
                cpu_before = {name: sampler.cpu_s(name) for name in sampler.names}
                result["posting_cpu_s"] = {name: round(cpu_before[name] - cpu_posting[name], 2) for name in sampler.names}
                started, started_at = time.perf_counter(), time.time()
                runs = await asyncio.gather(*(call("POST", "rating", "/v1/bill-runs", {"period": period}, t) for t in sellers))
                closed = time.perf_counter()
                expected = sum(int(r["buyers"]) for r in runs)
                say(f"bill runs {period}: {expected:,} buyers, {sum(int(r['lines']) for r in runs):,} lines, closed in {closed - started:.2f}s")

                async def seen() -> int:
                    return len(watch.invoices)

                await wait_progress("invoices issued", seen, expected, args.stall, say)
                pdfs = "SELECT count(*) FROM invoicing.document WHERE format = 'pdf' AND seller_id = ANY(:sellers)"
                result["pdfs_at_last_invoice"] = await count(pdfs)
                ended = watch.last_at
                followers = [name for name in FOLLOWERS if name in sampler.names]
                for name in followers:
                    await wait_progress(
                        f"{name}'s InvoiceIssued",
                        lambda name=name: count(f"SELECT count(*) FROM {name}.inbox WHERE event_type = '{InvoiceIssued.event_type}'"),
                        expected,
                        args.stall,
                        say,
                    )
                followed = time.perf_counter()
                cpu = {name: round(sampler.cpu_s(name) - cpu_before[name], 2) for name in sampler.names}
                seconds = ended - started
                marks = {
                    "close": closed - started,
                    "periods_sent": await epoch(engine, f"SELECT max(sent_at) FROM rating.outbox WHERE event_type = '{PeriodClosed.event_type}'"),
                    "periods_applied": await epoch(engine, f"SELECT max(applied_at) FROM invoicing.inbox WHERE event_type = '{PeriodClosed.event_type}'"),
                    "invoices": seconds,
                }
                for name in followers:
                    marks[f"{name}_applied"] = await epoch(engine, f"SELECT max(applied_at) FROM {name}.inbox WHERE event_type = '{InvoiceIssued.event_type}'")
                for key in ("periods_sent", "periods_applied", *(f"{name}_applied" for name in followers)):
                    mark = marks[key]
                    marks[key] = mark - started_at if mark is not None else None
                last_follow = max([marks[f"{name}_applied"] or 0.0 for name in followers], default=None)
                result.update(
                    invoices=len(watch.invoices),
                    lines=watch.lines,
                    seconds=round(seconds, 2),
                    invoices_per_s=round(len(watch.invoices) / seconds, 1) if seconds > 0 else None,
                    close_seconds=round(closed - started, 2),
                    transport_seconds=round(marks["periods_sent"] - marks["close"], 2)
                    if marks["periods_sent"] is not None and marks["close"] is not None
                    else None,
                    invoicing_seconds=round(ended - closed, 2),
                    following_seconds=round(max(last_follow - seconds, 0.0), 2) if last_follow is not None else None,
                    all_followed_seconds=round(followed - started, 2) if followers else None,
                    phases={k: round(v, 2) if v is not None else None for k, v in marks.items()},
                    cpu_s=cpu,
                    cpu_ms_per_invoice={name: round(1000 * c / max(len(watch.invoices), 1), 2) for name, c in cpu.items()},
                )

                before = await table_rows(engine)
                again = await asyncio.gather(*(call("POST", "rating", "/v1/bill-runs", {"period": period}, t) for t in sellers))
                if any(a["created"] or a["bill_run_id"] != r["bill_run_id"] for a, r in zip(again, runs, strict=True)):
                    raise SystemExit(f"a second bill run was not recognised as the first: {again}")
                await asyncio.sleep(args.settle)  # anything the re-run set off has time to arrive
                after = await table_rows(engine)
                result["rerun_rows_by_table"] = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
                result["rerun_rows_written"] = sum(result["rerun_rows_by_table"].values())
                result["rerun_invoices"] = len(watch.invoices) - expected
                result["pdfs_at_end"] = await count(pdfs)
            finally:
                await watch.stop()
        finally:
            await engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=20, help="orders (one product each) per customer: lines per invoice")
    parser.add_argument("--sellers", type=int, default=1, help="sellers sharing the customers (customer i is seller i mod N's), each with its bill run")
    parser.add_argument("--all-services", action="store_true", help="run payments, dunning and notify too")
    parser.add_argument("--http-concurrency", type=int, default=4, help="POSTs in flight while posting customers and orders")
    parser.add_argument("--stall", type=float, default=300.0, help="give up when a wait has not moved for this many seconds")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds given to the re-run before its rows are counted")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args()

    names = tuple(s.name for s in SERVICES) if args.all_services else PATH_SERVICES
    env = isolated_env("BILLING_SMTP_PORT", *(spec.port_env for spec in SERVICES), *(sandbox.port_env for sandbox in SANDBOXES), AUTH_MODE="api_key")
    platform = Platform.throwaway("billing-bench-close-", env, quiet=True)

    def say(message: str) -> None:
        print(message, flush=True)

    sampler = Sampler(platform, names)
    try:
        platform._start_postgres()
        platform._start_kafka()
        if args.all_services:
            platform._start_smtp()
            platform._start_sandboxes()
        platform.migrate(only=names)
        asyncio.run(ensure_topics(platform.bootstrap))
        # The keys are on billing.auth before any service starts: each reads the topic at startup.
        issued = {seller: generate_key(seller, "write") for seller in seller_ids(args.sellers)}
        asyncio.run(publish(platform.bootstrap, *(k.event(label="bench month close", now=datetime.now(UTC)) for k in issued.values())))
        for name in names:
            platform.start_service(name)
        for name in names:
            platform.wait_ready(name, timeout=300)
        say(f"platform up ({', '.join(names)}); logs in {platform.state_dir / 'logs'}")
        sampler.start()
        result = asyncio.run(run(platform, {seller: k.key for seller, k in issued.items()}, args, sampler, say))
        result["rss_mb"] = sampler.stop()
        result["rss_main_mb"] = {name: round(kb / 1024, 1) for name, kb in sampler.peak_main_kb.items()}
        result["pss_mb"] = {name: round(kb / 1024, 1) for name, kb in sampler.peak_pss_kb.items()}
        result["rss_workers_mb"] = {name: round(kb / 1024, 1) for name, kb in sampler.peak_workers_kb.items()}
        result["pss_main_mb"] = {name: round(kb / 1024, 1) for name, kb in sampler.peak_main_pss_kb.items()}
        result["pss_workers_mb"] = {name: round(kb / 1024, 1) for name, kb in sampler.peak_workers_pss_kb.items()}
        result["workers_max"] = dict(sampler.workers_max)
    finally:
        sampler.stop()
        platform.discard()  # its database and state folder too, however the run ended

    say(f"month close: {result['customers']:,} customers × {result['subscriptions']} subscriptions, {result['sellers']} sellers, on {os.cpu_count()} cores")
    say(
        f"invoiced {result['invoices']:,} invoices, {result['lines']:,} lines in {result['seconds']}s → {result['invoices_per_s']} invoices/s"
        f" (close {result['close_seconds']}s, invoicing {result['invoicing_seconds']}s; goal ≤ 60 s for 10k)"
    )
    say(f"phases (s since the POST): {result['phases']}; following the last invoice: {result['following_seconds']}s")
    say(f"cpu ms per invoice: {result['cpu_ms_per_invoice']}; during posting and catch-up, cpu s: {result['posting_cpu_s']}")
    say(f"cpu s: {result['cpu_s']}; peak rss MB: {result['rss_mb']} (the service's own process: {result['rss_main_mb']}; PSS: {result['pss_mb']})")
    say(
        f"its other processes (invoicing's rendering processes), at most {result['workers_max']}: peak rss MB {result['rss_workers_mb']},"
        f" PSS {result['pss_workers_mb']}; the service's own PSS: {result['pss_main_mb']}"
    )
    say(f"re-run of the same bill run: {result['rerun_rows_written']} rows written {result['rerun_rows_by_table']}, {result['rerun_invoices']} invoices")
    if args.json:
        print(json.dumps(result))
    if result["rerun_rows_written"] or result["rerun_invoices"]:
        raise SystemExit("the second bill run wrote something")


if __name__ == "__main__":
    main()
