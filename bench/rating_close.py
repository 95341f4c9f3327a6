"""Rating's close of a period, in process: one seller with N subscriptions (20 per customer, one
per product, five billing policies, quantity changes, cancellations and usage), October 2026 closed
by `rating.billrun.service.close_period` as `POST /v1/bill-runs` does, then closed again (a repeat
must write nothing).

    .venv/bin/python bench/rating_close.py --subscriptions 200000 [--per-customer 20] [--json] [--profile]

Not a test: it prints figures; with --json the last line is one JSON object (subscriptions,
seconds, subscriptions_per_s, cpu_s, lines, buyers, rerun_rows_written, rss_mb). The fixtures are written
with set-based SQL (no events, no HTTP). Uses the PostgreSQL server of DATABASE_URL, else the one
on 127.0.0.1:5432, in a fresh database dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from billing_runtime.embedded import drop_database, ensure_database, with_database
from billing_runtime.migrations import migrations_dir, upgrade
from billing_runtime.service import ServiceRuntime
from rating import billrun, catalogue, discount, subscription  # noqa: F401  (registers the tables)
from rating.billrun.schemas import BillRunOut
from rating.billrun.service import close_period
from rating.config import Settings
from rating.db import metadata

SELLER = "bench-seller"
DISTRIBUTOR = "bench-distributor"
CLOCK = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# Five policies, cycled over the products: arrears in full, advance pro rata, arrears pro rata with
# a change cut-off, a commitment with notice, and usage.
POLICIES = (
    ("contracted", None),
    ("contracted", {"timing": "advance", "proration": "daily"}),
    ("contracted", {"proration": "daily", "change_cutoff_business_days": 3}),
    ("contracted", {"commitment_months": 12, "notice_business_days": 30}),
    ("usage_sum", None),
)
TIERS = [{"up_to": "5", "unit_price": "10"}, {"up_to": None, "unit_price": "8"}]


def seed_sql(subscriptions: int, per_customer: int) -> list[tuple[str, dict[str, object]]]:
    """The statements that write the fixtures: all rows of a table in one INSERT … SELECT."""
    n = {"n": subscriptions, "per": per_customer, "seller": SELLER, "at": CLOCK}
    return [
        (
            "INSERT INTO rating.seller_profile (seller_id, currency, country, time_zone, issue_day, scheduled, updated_at)"
            " VALUES (:seller, 'EUR', 'IE', 'Europe/Dublin', NULL, false, :at)",
            n,
        ),
        (
            "INSERT INTO rating.product (seller_id, code, name, unit_price, currency, quantity_rule, kind, policy, updated_at)"
            " SELECT :seller, 'SKU-' || lpad(j::text, 2, '0'), 'Product ' || j, 1.25 + j * 0.85, 'EUR',"
            " (CAST(:rules AS text[]))[j % 5 + 1], CASE WHEN j % 5 = 4 THEN 'usage' ELSE 'recurring' END,"
            " (CAST(:policies AS jsonb[]))[j % 5 + 1], :at FROM generate_series(0, :per - 1) AS j",
            {**n, "rules": [r for r, _ in POLICIES], "policies": [json.dumps(p) for _, p in POLICIES]},
        ),
        (
            # A graduated price list entry for one product, a volume one for another.
            "INSERT INTO rating.price (seller_id, product_code, effective_from, currency, model, updated_at) VALUES"
            " (:seller, 'SKU-00', DATE '2026-01-01', 'EUR', CAST(:graduated AS jsonb), :at),"
            " (:seller, 'SKU-01', DATE '2026-01-01', 'EUR', CAST(:volume AS jsonb), :at)",
            {**n, "graduated": json.dumps({"model": "graduated", "tiers": TIERS}), "volume": json.dumps({"model": "volume", "tiers": TIERS})},
        ),
        (
            "INSERT INTO rating.buyer_account (seller_id, account_id, external_id, name, currency, revision)"
            " SELECT :seller, 'acct-' || c, 'c' || c, 'Customer ' || c, 'EUR', 1 FROM generate_series(0, (:n - 1) / :per) AS c",
            n,
        ),
        (
            "INSERT INTO rating.subscription (seller_id, subscription_id, order_id, account_id, product_code, quantity, start_on,"
            " ordered_at, setup_exempt)"
            " SELECT :seller, 'sub-' || i, 'ord-' || i, 'acct-' || (i / :per), 'SKU-' || lpad((i % :per)::text, 2, '0'), 1 + i % 9,"
            " DATE '2026-07-01' + (i * 7) % 120, (DATE '2026-07-01' + (i * 7) % 120)::timestamptz - interval '15 hours', false"
            " FROM generate_series(0, :n - 1) AS i",
            n,
        ),
        (
            # Every tenth subscription grows mid-October; every twentieth is cancelled.
            "INSERT INTO rating.subscription_change (seller_id, subscription_id, order_id, account_id, kind, quantity, effective_on, requested_at)"
            " SELECT :seller, 'sub-' || i, 'chg-' || i, 'acct-' || (i / :per), 'quantity', 3 + i % 9, DATE '2026-10-15',"
            " TIMESTAMPTZ '2026-10-09 10:00Z' FROM generate_series(0, :n - 1, 10) AS i"
            " UNION ALL"
            " SELECT :seller, 'sub-' || i, 'cxl-' || i, 'acct-' || (i / :per), 'cancellation', NULL, DATE '2026-10-20',"
            " TIMESTAMPTZ '2026-10-05 10:00Z' FROM generate_series(3, :n - 1, 20) AS i",
            n,
        ),
        (
            "INSERT INTO rating.usage_record (seller_id, record_id, account_id, product_code, quantity, occurred_at)"
            " SELECT :seller, 'u-' || i || '-' || k, 'acct-' || (i / :per), 'SKU-' || lpad((i % :per)::text, 2, '0'), 0.5 + k,"
            " TIMESTAMPTZ '2026-10-03 12:00Z' + k * interval '7 days'"
            " FROM generate_series(0, :n - 1) AS i, generate_series(0, 2) AS k WHERE (i % :per) % 5 = 4",
            n,
        ),
    ]


async def charged(runtime: ServiceRuntime) -> str:
    """The sum of every rated charge: the same figure before and after a change of the close."""
    async with runtime.sessions() as session:
        return str((await session.execute(text("SELECT coalesce(sum(amount), 0) FROM rating.rated_charge"))).scalar_one())


async def rows_written(runtime: ServiceRuntime) -> int:
    async with runtime.sessions() as session:
        found = await session.execute(
            text(
                "SELECT (SELECT count(*) FROM rating.rated_charge) + (SELECT count(*) FROM rating.outbox)"
                " + (SELECT count(*) FROM rating.bill_run)"
                " + (SELECT count(*) FROM rating.usage_record WHERE bill_run_id IS NOT NULL)"
            )
        )
        return int(found.scalar_one())


async def close(runtime: ServiceRuntime) -> tuple[float, float, BillRunOut]:
    started, cpu = time.perf_counter(), time.process_time()
    async with runtime.transaction() as session:
        run = await close_period(runtime, session, SELLER, "2026-10", DISTRIBUTOR)
    return time.perf_counter() - started, time.process_time() - cpu, run


def phase_seconds() -> dict[str, float]:
    """The close's phases as its histogram recorded them (absent in code without phases)."""
    from prometheus_client import REGISTRY

    found = {}
    for metric in REGISTRY.collect():
        if metric.name == "billing_bill_run_phase_seconds":
            for sample in metric.samples:
                if sample.name.endswith("_sum"):
                    found[sample.labels["phase"]] = round(sample.value, 3)
    return found


async def run(database_url: str, args: argparse.Namespace) -> dict[str, object]:
    settings = Settings(database_url=database_url, clock_fixed_at=CLOCK, distributor_id=DISTRIBUTOR, scheduler_enabled=False)
    runtime = ServiceRuntime("rating", settings, metadata)
    try:
        seeding = time.perf_counter()
        async with runtime.transaction() as session:
            for sql, params in seed_sql(args.subscriptions, args.per_customer):
                await session.execute(text(sql), params)
        async with runtime.sessions() as session:
            await session.execute(text("ANALYZE"))
        seeded = time.perf_counter() - seeding
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        seconds, cpu_seconds, first = await close(runtime)
        if profile:
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(45)
            print(out.getvalue())
        phases = phase_seconds()
        amount = await charged(runtime)
        before = await rows_written(runtime)
        again_seconds, _, again = await close(runtime)
        rerun = await rows_written(runtime) - before
    finally:
        await runtime.engine.dispose()
    return {
        "subscriptions": args.subscriptions,
        "seconds": round(seconds, 3),
        "subscriptions_per_s": round(args.subscriptions / seconds),
        "cpu_s": round(cpu_seconds, 3),  # this process's CPU (the database's is not in it)
        "phases": phases,
        "buyers": first.buyers,
        "lines": first.lines,
        "amount_total": amount,
        "seed_seconds": round(seeded, 2),
        "rerun_seconds": round(again_seconds, 3),
        "rerun_created": again.created,
        "rerun_rows_written": rerun,
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure(args: argparse.Namespace) -> dict[str, object]:
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = with_database(server, f"billing_bench_close_{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_database(url, fresh=True))
    try:
        upgrade(migrations_dir("rating"), url)
        return asyncio.run(run(url, args))
    finally:
        asyncio.run(drop_database(url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=200_000)
    parser.add_argument("--per-customer", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first close")
    args = parser.parse_args()
    result = measure(args)
    print(
        f"rating close: {result['subscriptions']:,} subscriptions, {result['buyers']:,} buyers, {result['lines']:,} lines"
        f" in {result['seconds']}s → {result['subscriptions_per_s']:,} subscriptions/s on {os.cpu_count()} cores;"
        f" repeat wrote {result['rerun_rows_written']} rows; peak RSS {result['rss_mb']} MB"
    )
    if args.json:
        print(json.dumps(result))
    if result["rerun_rows_written"] != 0:
        raise SystemExit("the repeat wrote something")


if __name__ == "__main__":
    main()
