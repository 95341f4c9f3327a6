"""Bill run throughput: closed periods of 10,000 customers × 20 subscriptions invoiced (taxed,
numbered, stored, outboxed; documents render lazily on download), against a raw asyncpg COPY of the
same number of line rows into the same database. A second run of the same period must write nothing.

    .venv/bin/python bench/bill_run.py [--customers 10000] [--lines 20] [--sellers 20] [--batch 500] [--concurrency 2] [--json]

Not a test: it prints figures (with --json, one JSON object on the last line). It calls invoicing's
`issue_invoices` in process, `--batch` closed periods per transaction, as the invoicing consumer
applies a polled batch of PeriodClosed (`--batch 1 --concurrency 8`: one transaction per invoice,
as before batches). Periods are in the order rating emits them (sellers interleaved); numbers are
gapless per seller, so batches naming the same sellers queue on their counter rows, and
`--concurrency` overlaps one batch's pricing with another's writes. Uses DATABASE_URL when set,
else an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from october import closed_period
from sqlalchemy import text

from billing_cli.platform import Platform
from billing_events import PeriodClosed
from billing_events.testing import make_customer
from billing_runtime.service import ServiceRuntime
from invoicing.buyer.service import record_customer
from invoicing.config import Settings
from invoicing.db import metadata
from invoicing.invoice.service import issue_invoices
from invoicing.seller.schemas import NetDays, SellerSettingsIn
from invoicing.seller.service import put_seller

# Irish sellers; buyers at home, in Germany with a VAT id (reverse charge) and French consumers (OSS).
BUYER_KINDS = (("IE", True, None), ("DE", True, "DE136695976"), ("FR", False, None))


def closed_periods(sellers: list[str], customers: int, lines: int) -> list[PeriodClosed]:
    return [closed_period(f"bench-{sellers[i % len(sellers)]}-2026-10", sellers[i % len(sellers)], i, lines) for i in range(customers)]


async def seed(runtime: ServiceRuntime[Settings], sellers: list[str], customers: int) -> None:
    async with runtime.transaction() as session:
        for seller in sellers:
            profile = SellerSettingsIn(name=f"Seller {seller}", country="IE", vat_id="IE6388047V", invoice_prefix="B", due_rule=NetDays(net_days=14))
            await put_seller(runtime, session, seller, profile)
    for start in range(0, customers, 500):
        async with runtime.transaction() as session:
            for i in range(start, min(start + 500, customers)):
                seller = sellers[i % len(sellers)]
                country, business, vat_id = BUYER_KINDS[i % len(BUYER_KINDS)]
                customer = make_customer(
                    seller, f"c{i}", name=f"Customer {i}", billing_email=f"c{i}@example.com", country=country, business=business, vat_id=vat_id
                )
                await record_customer(runtime, session, customer)


async def bill_run(runtime: ServiceRuntime[Settings], periods: list[PeriodClosed], batch: int, concurrency: int) -> tuple[float, int]:
    queue: asyncio.Queue[list[PeriodClosed]] = asyncio.Queue()
    for start in range(0, len(periods), batch):
        queue.put_nowait(periods[start : start + batch])
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while not queue.empty():
            chunk = queue.get_nowait()
            async with runtime.transaction() as session:
                invoice_ids = await issue_invoices(runtime, session, chunk)
            issued += sum(1 for i in invoice_ids if i is not None)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, issued


async def raw_copy(database_url: str, rows: int) -> float:
    """The floor: COPY the same number of line rows, already built, into a bare table."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TEMP TABLE bench_line (invoice_id text, position int, line_id text, product_code text, description text,"
            " quantity numeric, unit_price numeric, amount numeric, net numeric, tax_rate numeric, tax_category text)"
        )
        invoice = str(uuid.uuid4())
        records = [
            (invoice, i, f"l{i}", "SKU-01", "Subscription", Decimal(3), Decimal("20.60"), Decimal("61.80"), Decimal("61.80"), Decimal(23), "S")
            for i in range(rows)
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table("bench_line", records=records)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def counts(runtime: ServiceRuntime[Settings]) -> tuple[int, int, int]:
    async with runtime.sessions() as session:
        invoices = await session.scalar(text("SELECT count(*) FROM invoicing.invoice"))
        lines = await session.scalar(text("SELECT count(*) FROM invoicing.invoice_line"))
        outbox = await session.scalar(text("SELECT count(*) FROM invoicing.outbox"))
    return int(invoices or 0), int(lines or 0), int(outbox or 0)


async def run(database_url: str, args: argparse.Namespace) -> None:
    settings = Settings(database_url=database_url, clock_fixed_at=datetime(2026, 11, 2, 9, tzinfo=UTC))
    runtime = ServiceRuntime("invoicing", settings, metadata)
    try:
        sellers = [f"bench-seller-{s}" for s in range(args.sellers)]
        await seed(runtime, sellers, args.customers)
        periods = closed_periods(sellers, args.customers, args.lines)
        seconds, issued = await bill_run(runtime, periods, args.batch, args.concurrency)
        after_first = await counts(runtime)
        again_seconds, again = await bill_run(runtime, periods, args.batch, args.concurrency)
        after_second = await counts(runtime)
        copy_seconds = await raw_copy(database_url, args.customers * args.lines)
    finally:
        await runtime.engine.dispose()

    lines = issued * args.lines
    shape = f"{args.customers:,} customers × {args.lines} subscriptions, {args.sellers} sellers"
    print(f"bill run: {shape}, {args.batch} per transaction, {args.concurrency} concurrent, on {os.cpu_count()} cores")
    print(f"invoiced:  {issued:,} invoices, {lines:,} lines in {seconds:.2f}s  →  {issued / seconds:,.0f} invoices/s, {lines / seconds:,.0f} lines/s")
    print(f"raw asyncpg COPY of {args.customers * args.lines:,} line rows: {copy_seconds:.2f}s  ({args.customers * args.lines / copy_seconds:,.0f} rows/s)")
    print(f"second run of the same period: {again} issued in {again_seconds:.2f}s; rows before {after_first}, after {after_second}")
    if args.json:
        figures = {
            "invoices": issued,
            "lines": lines,
            "seconds": round(seconds, 2),
            "invoices_per_s": round(issued / seconds, 1),
            "lines_per_s": round(lines / seconds),
            "raw_copy_seconds": round(copy_seconds, 2),
            "eta": round(copy_seconds / seconds, 3),
            "rerun_issued": again,
            "rerun_seconds": round(again_seconds, 2),
            "rerun_rows_written": sum(after_second) - sum(after_first),
            "batch": args.batch,
            "concurrency": args.concurrency,
        }
        print(json.dumps(figures))
    if again != 0 or after_first != after_second:
        raise SystemExit("the second run wrote something")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--sellers", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500, help="closed periods per transaction (the consumer's polled batch)")
    parser.add_argument("--concurrency", type=int, default=2, help="batches in flight")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args()

    platform = Platform.throwaway("billing-bench-", dict(os.environ), quiet=True)
    try:
        platform._start_postgres()
        platform.migrate(only=("invoicing",))
        asyncio.run(run(platform.database_url, args))
    finally:
        platform.discard()  # its database and state folder too, however the run ended


if __name__ == "__main__":
    main()
