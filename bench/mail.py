"""Invoice mail throughput: invoice emails with their PDF, from notify to a real SMTP server.

    .venv/bin/python bench/mail.py [--invoices 2000] [--render-while-sending | --warm-documents] [--json]

Honest by construction: invoicing runs as a service and issues the invoices itself (customers and
closed periods published to Kafka, as rating and usage-ingest would), so every `InvoiceIssued`
carries a real shared link and every PDF is one invoicing renders (WeasyPrint, Factur-X inside),
in its rendering processes, and serves through that link, as in production.

Phases: (1) invoicing issues `--invoices` invoices, with notify not running; the bench copies the
`InvoiceIssued` messages from `billing.invoices`. By default invoicing renders each invoice's
documents in the background after it is issued (`INVOICING_RENDER_AHEAD`, as in production), and
the bench waits until every PDF is stored: `render_s`, `renders_per_s` and `render_cpu_ms_per_pdf`
(invoicing's CPU, its rendering processes included, per PDF) are that phase's figures, what a month
close's rendering costs. (2) notify starts (its group at the end of each topic), its contact
projection is fed the same customers. (3) The clock starts and the copied `InvoiceIssued` messages
are published again, byte for byte; it stops when the SMTP server (aiosmtpd in this process) has
received the last invoice email. Each received message must carry a PDF.

(4) The sending alone ("drain"): notify stopped, every invoice email marked due again, notify
started; `drain_emails_per_s` from the first to the last message of that round, and
`drain_cpu_ms_per_email` of each service over it. Between (3) and (4), the ceiling:
`bare_smtp_emails_per_s`, a bare aiosmtplib client sending the first email notify sent (PDF
included) `--invoices` times to the same SMTP server over `--smtp-connections` connections.

invoicing lists 127.0.0.1 in `PUBLIC_RATE_LIMIT_EXEMPT`, as it should list notify's addresses in a
deployment (notify fetches every PDF through its shared link); `--limit-notify` leaves notify to
the per-address limit like any caller (10/s, burst 100): `document_fetches_throttled` counts the
429s notify waited out (`document_fetches`: notify's fetches over HTTP and from memory, phase 3).
`--drain-notify-workers 1,2,1,2` runs phase 4 once per number of notify processes (`drain_rounds`).

`--render-while-sending` turns rendering ahead off: the PDFs render on their first download, when
notify fetches them in the timed phase (the behaviour before rendering ahead). `--warm-documents`
(with it) fetches every PDF once through its shared link before phase 3.

Figures: `emails_per_s` = emails / (last message received − first event published); `decided_s`
(`decided_per_s`) when notify's consumer had recorded every delivery (polled every 0.2 s): when it
is close to the whole time, the consumer, not the sending, is what limits; `pdf_ms_p50`
and `pdf_ms_mean` from invoicing's `billing_document_render_seconds` histogram (p50 interpolated
within its buckets, as Prometheus' `histogram_quantile`: wall time of one rendering, queueing for a
rendering process included); `cpu_ms_per_email` the CPU of each service (its child processes
included) and of this process (the SMTP server, the publisher) during phase 3, per email, with the
load average at its start and end; `rss_mb` the peak RSS of notify (every service's in
`rss_mb_by_service`, and each rendering process's in `rss_mb_render_workers`). Not a test: it prints
figures, and with `--json` its last line is one JSON object. Uses DATABASE_URL when set, else the
PostgreSQL on 127.0.0.1:5432 if it answers, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from october import closed_period
from sqlalchemy import text

from billing_cli.platform import Platform, isolated_env
from billing_events import CustomerUpserted, attributes_from_headers, new_event, to_kafka
from billing_events.testing import make_customer
from billing_events.topics import INVOICES
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port, postgres_answers
from billing_runtime.kafka import ensure_topics

SELLER = "bench-mail-seller"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
INVOICE_ISSUED = "billing.invoice.issued.v1"


class Sink:
    """The SMTP server's side: counts messages, keeps when the last arrived, checks each carries a PDF."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.with_pdf = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.times: list[float] = []
        self.sample: tuple[str, list[str], bytes] | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if self.sample is None:
            self.sample = (envelope.mail_from or "", list(envelope.rcpt_tos), content)
        # "JVBERi0" is "%PDF-" in base64: the attachment is a real PDF, not an empty part.
        has_pdf = b"application/pdf" in content and b"JVBERi0" in content
        now = time.perf_counter()
        with self.lock:
            self.received += 1
            self.with_pdf += has_pdf
            self.first_at = self.first_at or now
            self.last_at = now
            self.times.append(now)
        return "250 Message accepted for delivery"


def customers(n: int) -> list[CustomerUpserted]:
    return [make_customer(SELLER, f"c{i}", name=f"Customer {i}", billing_email=f"c{i}@example.com") for i in range(n)]


async def publish(bootstrap: str, events: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sends = []
        for data in events:
            message = to_kafka(new_event(data, source="/bench/mail", tenant=SELLER))
            sends.append(await producer.send(message.topic, value=message.value, key=message.key, headers=message.headers))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def wait_count(database_url: str, query: str, expected: int, what: str, stall_s: float = 180.0) -> int:
    """Wait until `query` counts `expected`, giving up only when nothing has moved for `stall_s`."""
    engine = create_engine(database_url, pool_size=1)
    last, moved = -1, time.monotonic()
    try:
        while True:
            async with engine.connect() as conn:
                count = int(await conn.scalar(text(query)) or 0)
            if count != last:
                last, moved = count, time.monotonic()
                print(f"  {what}: {count}/{expected}", flush=True)
            if count >= expected:
                return count
            if time.monotonic() - moved > stall_s:
                raise SystemExit(f"{what}: stuck at {count}/{expected} for {stall_s:.0f}s")
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


async def copy_invoice_events(bootstrap: str, expected: int) -> list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """The `InvoiceIssued` messages invoicing published, as (partition, key, value, headers)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(INVOICES.name, p) for p in sorted(consumer.partitions_for_topic(INVOICES.name) or range(INVOICES.partitions))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        deadline = time.monotonic() + 120
        while len(found) < expected and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500, max_records=1000)).items():
                for m in messages:
                    headers = list(m.headers or [])
                    if attributes_from_headers(headers).get("type") == INVOICE_ISSUED:
                        found.append((tp.partition, m.key, m.value, headers))
        return found
    finally:
        await consumer.stop()


async def republish(bootstrap: str, messages: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(INVOICES.name, value=v, key=k, headers=h, partition=p) for p, k, v, h in messages]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def wait_mail(database_url: str, sink: Sink, n: int, stall_s: float = 180.0) -> float | None:
    """Wait for the n-th message (or until nothing moved for `stall_s`); returns when notify's
    consumer had recorded all n deliveries (the consumer's share of the time)."""
    engine = create_engine(database_url, pool_size=1)
    decided_at: float | None = None
    last, moved = -1, time.monotonic()
    try:
        while sink.received < n and time.monotonic() - moved < stall_s:
            if decided_at is None:
                async with engine.connect() as conn:
                    if int(await conn.scalar(text("SELECT count(*) FROM notify.delivery")) or 0) >= n:
                        decided_at = time.perf_counter()
            if sink.received != last:
                last, moved = sink.received, time.monotonic()
                print(f"  received {sink.received}/{n}", flush=True)
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    return decided_at or (time.perf_counter() if sink.received >= n else None)


def shared_links(values: list[bytes | None]) -> list[str]:
    links = []
    for value in values:
        documents = json.loads(value or b"{}").get("documents") or []
        links += [d["shared_url"] for d in documents if d.get("kind") == "pdf" and d.get("shared_url")]
    return links


async def warm(links: list[str], invoicing_url: str, concurrency: int = 4) -> None:
    """Fetch each PDF once by its shared link (invoicing renders and stores it)."""
    queue = list(links)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            link = queue.pop()
            path = link[link.index("/v1/shared/") :]
            (await client.get(f"{invoicing_url}{path}")).raise_for_status()

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def metric_histogram(body: str, name: str) -> tuple[list[tuple[float, float]], float, float]:
    """(upper bound, cumulative count) buckets, sum and count of a histogram without labels."""
    buckets = []
    total = count = 0.0
    for line in body.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                buckets.append((float(le.group(1)), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
    return sorted(buckets), total, count


def metric_value(body: str, name: str) -> float | None:
    """The value of a metric without labels (None when the service does not export it)."""
    for line in body.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """As Prometheus' histogram_quantile: linear within the bucket the rank falls in."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(cumulative - lower_count, 1e-9)
        lower_bound, lower_count = bound, cumulative
    return lower_bound


def descendants(pid: int) -> list[int]:
    """The process and every process below it (invoicing's rendering processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += parents.get(p, [])
    return found


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and every process below it (those alive, and those
    gone that their parent waited for)."""
    total = 0.0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def bare_smtp(port: int, sample: tuple[str, list[str], bytes], n: int, connections: int) -> dict[str, Any]:
    """The ceiling: a bare aiosmtplib client sending `n` copies of a real invoice email (as notify
    sent it, PDF included) to the same SMTP server, over `connections` connections kept open."""
    import aiosmtplib

    sender, recipients, content = sample
    left = list(range(n))

    async def one_connection() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await smtp.connect()
        try:
            while left:
                left.pop()
                await smtp.sendmail(sender, recipients, content)
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"bare_smtp_emails_per_s": round(n / elapsed, 2), "bare_smtp_connections": connections, "email_bytes": len(content)}


def max_rss_mb(pid: int) -> float:
    """The largest peak RSS of a process and those below it (uvicorn's worker processes)."""
    return max(rss_mb(p) for p in descendants(pid))


def drain(platform: Platform, sink: Sink, n: int, workers: int = 1) -> dict[str, Any]:
    """The sending alone: every invoice email marked due again while notify is stopped, then
    notify started; the rate from the first to the last message of that round (the consumer has
    nothing to do; documents come from invoicing's store through the shared links again)."""
    print(f"phase 4 (drain): the {n} invoice emails due again, notify restarted ({workers} worker processes)", flush=True)
    platform.stop_service("notify")
    platform.env["BILLING_NOTIFY_WORKERS"] = str(workers)

    async def due_again() -> None:
        engine = create_engine(platform.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE notify.delivery SET status = 'pending', attempts = 0, next_attempt_at = now(), sent_at = NULL,"
                        " last_error = NULL WHERE template = 'invoice_issued'"
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(due_again())
    mark = sink.received
    platform.start_service("notify", {"CONSUMER_AUTO_OFFSET_RESET": "latest"})
    pids = {name: p.pid for name, p in platform.processes.items()}
    last, moved = -1, time.monotonic()
    cpu_at_first: dict[str, float] | None = None
    while sink.received < mark + n and time.monotonic() - moved < 180:
        if cpu_at_first is None and sink.received > mark:
            cpu_at_first = {name: cpu_s(pid) for name, pid in pids.items()}
        if sink.received != last:
            last, moved = sink.received, time.monotonic()
            print(f"  received {sink.received - mark}/{n}", flush=True)
        time.sleep(0.05 if cpu_at_first is None else 0.5)
    with sink.lock:
        times = sink.times[mark:]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    # CPU from (about) the first message of the round to the last, per email: notify's restart is not in it.
    cpu_ms = {name: round((cpu_s(pid) - (cpu_at_first or {}).get(name, 0.0)) / max(len(times), 1) * 1000, 2) for name, pid in pids.items()}
    return {
        "drain_notify_workers": workers,
        "drain_rss_mb_notify": max_rss_mb(pids["notify"]),
        "drain_emails": len(times),
        "drain_s": round(span, 2),
        "drain_emails_per_s": round((len(times) - 1) / span, 2) if span else None,
        "drain_cpu_ms_per_email": cpu_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=5, help="lines per invoice")
    parser.add_argument(
        "--render-while-sending", action="store_true", help="no rendering ahead: PDFs render on their first download (INVOICING_RENDER_AHEAD=false)"
    )
    parser.add_argument("--warm-documents", action="store_true", help="with --render-while-sending: fetch every PDF once before the timed phase")
    parser.add_argument("--render-workers", type=int, default=None, help="INVOICING_RENDER_WORKERS (default: invoicing's own)")
    parser.add_argument("--no-drain", dest="drain", action="store_false", help="skip phase 4 (the sending alone)")
    parser.add_argument(
        "--limit-notify",
        action="store_true",
        help="invoicing limits notify's shared-link fetches per address like any caller's (no PUBLIC_RATE_LIMIT_EXEMPT for 127.0.0.1)",
    )
    parser.add_argument(
        "--drain-notify-workers",
        type=lambda v: [int(w) for w in v.split(",")],
        default=[1],
        help="phase 4 once per number of notify worker processes given (`1,2`: paired rounds in one run)",
    )
    parser.add_argument("--smtp-connections", type=int, default=16, help="connections of the bare SMTP client (notify's SENDER_CONCURRENCY)")
    parser.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    args = parser.parse_args()

    env = isolated_env("BILLING_INVOICING_PORT", "BILLING_NOTIFY_PORT", AUTH_MODE="trusted_header")
    env["INVOICING_RENDER_AHEAD"] = "false" if args.render_while_sending else "true"
    # notify, as deployed beside invoicing, is exempt from the per-address limit on shared links
    # (README; a development platform exempts this machine by default): --limit-notify takes it away.
    env["PUBLIC_RATE_LIMIT_EXEMPT"] = "[]" if args.limit_notify else '["127.0.0.1/32"]'
    if args.render_workers:
        env["INVOICING_RENDER_WORKERS"] = str(args.render_workers)
    if "DATABASE_URL" not in env and asyncio.run(postgres_answers(LOCAL_SERVER)):
        env["DATABASE_URL"] = LOCAL_SERVER
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    env["NOTIFY_SMTP_HOST"], env["NOTIFY_SMTP_PORT"] = "127.0.0.1", str(smtp_port)

    platform = Platform.throwaway("billing-bench-mail-", env, quiet=True)
    controller.start()
    figures: dict[str, Any] = {}
    try:
        platform._start_postgres()
        platform._start_kafka()
        platform.migrate(only=("invoicing", "notify"))
        asyncio.run(ensure_topics(platform.bootstrap))
        n = args.invoices

        print(f"phase 1: invoicing issues {n} invoices ({args.lines} lines each)", flush=True)
        platform.start_service("invoicing")
        platform.wait_ready("invoicing")
        invoicing_pid = platform.processes["invoicing"].pid
        profile = {"name": "Bench Mail Ltd", "country": "IE", "vat_id": "IE6388047V", "invoice_prefix": "BM", "due_rule": {"net_days": 14}}
        httpx.put(f"{platform.url('invoicing')}/v1/seller", headers={"X-Tenant-Id": SELLER}, json=profile, timeout=30).raise_for_status()
        asyncio.run(publish(platform.bootstrap, customers(n)))
        asyncio.run(wait_count(platform.database_url, "SELECT count(*) FROM invoicing.buyer", n, "buyers known to invoicing"))
        render_cpu_before, render_started = cpu_s(invoicing_pid), time.perf_counter()
        asyncio.run(publish(platform.bootstrap, [closed_period(f"bench-mail-{SELLER}-2026-10", SELLER, i, args.lines) for i in range(n)]))
        asyncio.run(wait_count(platform.database_url, "SELECT count(*) FROM invoicing.invoice", n, "invoices issued"))
        figures["issue_s"] = round(time.perf_counter() - render_started, 2)
        if not args.render_while_sending:
            pdfs = "SELECT count(*) FROM invoicing.document WHERE owner_kind = 'invoice' AND format = 'pdf'"
            asyncio.run(wait_count(platform.database_url, pdfs, n, "PDFs rendered ahead"))
            render_s, render_cpu = time.perf_counter() - render_started, cpu_s(invoicing_pid) - render_cpu_before
            figures.update(
                render_s=round(render_s, 2),
                renders_per_s=round(n / render_s, 2),
                render_cpu_ms_per_pdf=round(render_cpu / n * 1000, 1),
                rss_mb_render_workers=[rss_mb(p) for p in descendants(invoicing_pid)[1:]],
            )
        messages = asyncio.run(copy_invoice_events(platform.bootstrap, n))
        if len(messages) < n:
            raise SystemExit(f"only {len(messages)} InvoiceIssued on {INVOICES.name}")
        links = shared_links([v for _, _, v, _ in messages])
        if len(links) < n:
            raise SystemExit(f"only {len(links)} of {n} invoices carry a shared PDF link")

        if args.warm_documents:
            started = time.perf_counter()
            asyncio.run(warm(links, platform.url("invoicing")))
            figures["warm_documents_s"] = round(time.perf_counter() - started, 2)
            print(f"  rendered {len(links)} PDFs in {figures['warm_documents_s']}s", flush=True)

        print("phase 2: notify starts and learns the billing contacts", flush=True)
        platform.start_service("notify", {"CONSUMER_AUTO_OFFSET_RESET": "latest"})
        platform.wait_ready("notify")
        asyncio.run(publish(platform.bootstrap, customers(n)))
        asyncio.run(wait_count(platform.database_url, "SELECT count(*) FROM notify.contact", n, "contacts known to notify"))

        print(f"phase 3: {n} InvoiceIssued published again; waiting for the mail", flush=True)
        pids = {name: p.pid for name, p in platform.processes.items()}
        cpu_before, bench_cpu_before, load_before = {name: cpu_s(pid) for name, pid in pids.items()}, time.process_time(), os.getloadavg()[0]
        started = time.perf_counter()
        asyncio.run(republish(platform.bootstrap, messages))
        published = time.perf_counter() - started
        decided_at = asyncio.run(wait_mail(platform.database_url, sink, n))
        elapsed = (sink.last_at or time.perf_counter()) - started
        decided = (decided_at - started) if decided_at is not None else None
        emails, with_pdf = sink.received, sink.with_pdf
        cpu_ms = {name: round((cpu_s(pid) - cpu_before[name]) / max(emails, 1) * 1000, 2) for name, pid in pids.items()}
        cpu_ms["bench (SMTP server, publisher)"] = round((time.process_time() - bench_cpu_before) / max(emails, 1) * 1000, 2)
        figures.update(cpu_ms_per_email=cpu_ms, load_avg_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)])
        if not args.render_while_sending:
            figures["rss_mb_render_workers"] = [rss_mb(p) for p in descendants(invoicing_pid)[1:]] or figures.get("rss_mb_render_workers")
        metrics = httpx.get(f"{platform.url('invoicing')}/metrics/", timeout=30).text
        buckets, render_sum, render_count = metric_histogram(metrics, "billing_document_render_seconds")
        by_service = {name: rss_mb(p.pid) for name, p in platform.processes.items()}
        notify_metrics = httpx.get(f"{platform.url('notify')}/metrics/", timeout=30).text
        figures["document_fetches_throttled"] = metric_value(notify_metrics, "billing_email_document_fetch_throttled_total")
        figures["document_fetches"] = {
            source: metric_value(notify_metrics, f'billing_email_document_fetch_seconds_count{{source="{source}"}}') for source in ("http", "memory")
        }
        if sink.sample is not None:
            figures.update(asyncio.run(bare_smtp(smtp_port, sink.sample, n, args.smtp_connections)))
        if args.drain:
            rounds = [drain(platform, sink, n, w) for w in args.drain_notify_workers]
            figures.update(rounds[0])
            if len(rounds) > 1:
                figures["drain_rounds"] = rounds
        figures.update(
            emails=emails,
            emails_with_pdf=with_pdf,
            invoices=n,
            seconds=round(elapsed, 2),
            publish_s=round(published, 2),
            emails_per_s=round(emails / elapsed, 2) if elapsed > 0 else None,
            decided_s=round(decided, 2) if decided is not None else None,
            decided_per_s=round(n / decided, 2) if decided else None,
            pdf_ms_p50=round(quantile(buckets, 0.5) * 1000, 1),
            pdf_ms_mean=round(render_sum / render_count * 1000, 1) if render_count else None,
            pdfs_rendered=int(render_count),
            warm_documents=args.warm_documents,
            render_ahead=not args.render_while_sending,
            rss_mb=by_service.get("notify"),
            rss_mb_by_service=by_service,
            cores=os.cpu_count(),
        )
    finally:
        platform.discard()  # its database and state folder too, however the run ended
        controller.stop()

    print(
        f"{figures['emails']} of {figures['invoices']} invoice emails ({figures['emails_with_pdf']} with their PDF) in {figures['seconds']}s: "
        f"{figures['emails_per_s']} emails/s; PDF render p50 {figures['pdf_ms_p50']} ms, mean {figures['pdf_ms_mean']} ms "
        f"({'rendered while sending' if args.render_while_sending and not args.warm_documents else 'rendered before the timed phase'}); "
        f"rendering ahead {figures.get('renders_per_s')} PDFs/s at {figures.get('render_cpu_ms_per_pdf')} ms CPU each; "
        f"CPU per email (ms) {figures['cpu_ms_per_email']}; RSS {figures['rss_mb_by_service']} MB; "
        f"consumer recorded all in {figures['decided_s']}s; sending alone {figures.get('drain_emails_per_s')} emails/s; "
        f"a bare SMTP client {figures.get('bare_smtp_emails_per_s')} emails/s; fetches throttled {figures.get('document_fetches_throttled')}"
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
