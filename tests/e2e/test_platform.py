"""The slice across all six services running as separate processes, as `billing up` runs them."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from billing_cli.demo import run_demo
from billing_cli.platform import SERVICES, Platform
from billing_events import account_id
from billing_runtime.db import create_engine
from billing_runtime.kafka import ensure_topics
from billing_runtime.outbox import republish


def call(platform: Platform, method: str, service: str, path: str, tenant: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, platform.url(service) + path, json=body, headers={"X-Tenant-Id": tenant}, timeout=30)


def eventually(probe: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"not reached in {timeout}s; last: {last!r}")


def setup_partner(platform: Platform, tenant: str, customers: list[str]) -> None:
    r = call(
        platform,
        "PUT",
        "rating",
        "/v1/products/BKP-GB",
        tenant,
        {"name": "Backup per GB", "unit_price": "0.10", "currency": "EUR", "description": None, "category": None, "quantity_rule": "usage_sum"},
    )
    assert r.status_code == 200, r.text
    records = [{"id": c, "name": c.title(), "billing_email": f"{c}@example.com", "country": "IE", "currency": "EUR"} for c in customers]
    r = call(platform, "POST", "usage-ingest", "/v1/customers", tenant, {"records": records})
    assert r.json()["accepted"] == len(customers), r.text


def charges(platform: Platform, tenant: str, customer: str) -> Decimal:
    r = call(platform, "GET", "rating", f"/v1/accounts/{account_id(tenant, customer)}/charges?period=2026-10", tenant)
    if r.status_code != 200:
        return Decimal(-1)
    return sum((Decimal(line["amount"]["amount"]) for line in r.json()["lines"]), Decimal(0))


def usage_batch(prefix: str, customer: str, n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-{i}", "customer_id": customer, "product_code": "BKP-GB", "quantity": "1", "timestamp": f"2026-10-{1 + i % 28:02d}T12:00:00Z"}
        for i in range(n)
    ]


def test_demo_month_end_to_end(platform: Platform) -> None:
    """Customers, orders and usage posted over HTTP become issued invoices, recorded payments,
    emails and dunning cases, to the cent (the same script `make demo` runs)."""
    assert run_demo(platform)


def test_consumer_killed_mid_stream_resumes_with_nothing_lost(platform: Platform) -> None:
    tenant = "kill-test"
    setup_partner(platform, tenant, ["k1"])
    records = usage_batch("k", "k1", 4000)
    for start in range(0, 2000, 500):
        assert call(platform, "POST", "usage-ingest", "/v1/usage", tenant, {"records": records[start : start + 500]}).json()["accepted"] == 500
    # rating is applying that stream now: kill it hard, keep posting, then bring it back.
    platform.stop_service("rating", kill=True)
    for start in range(2000, 4000, 500):
        assert call(platform, "POST", "usage-ingest", "/v1/usage", tenant, {"records": records[start : start + 500]}).json()["accepted"] == 500
    platform.start_service("rating")
    platform.wait_ready("rating")
    # 4,000 records × 1 GB × 0.10: every record counted once, none lost, none twice.
    assert eventually(lambda: charges(platform, tenant, "k1") == Decimal("400.00") or None, timeout=120.0)
    time.sleep(1.0)
    assert charges(platform, tenant, "k1") == Decimal("400.00")


def test_broker_restart_is_healed_by_republishing_the_outbox(platform: Platform) -> None:
    tenant = "restart-test"
    setup_partner(platform, tenant, ["r1", "r2"])
    started = datetime.now(UTC) - timedelta(seconds=5)
    for customer in ("r1", "r2"):
        r = call(platform, "POST", "usage-ingest", "/v1/usage", tenant, {"records": usage_batch(f"r-{customer}", customer, 30)})
        assert r.json()["accepted"] == 30
    eventually(lambda: charges(platform, tenant, "r1") == Decimal("3.0") and charges(platform, tenant, "r2") == Decimal("3.0"))

    # invoicing is down when the period closes, so PeriodClosed waits on the topic for it...
    platform.stop_service("invoicing")
    r = call(platform, "POST", "rating", "/v1/bill-runs", tenant, {"period": "2026-10"})
    assert r.status_code == 201, r.text
    time.sleep(1.0)  # the relay publishes PeriodClosed to the topic
    # ...and the broker restarts, losing every topic and message (Tansu keeps nothing).
    assert platform.broker is not None
    platform.broker.stop()
    platform.broker.start()
    asyncio.run(ensure_topics(platform.bootstrap))
    platform.start_service("invoicing")
    platform.wait_ready("invoicing")

    async def heal() -> None:
        engine = create_engine(platform.database_url)
        try:
            import importlib

            for spec in SERVICES:
                db = importlib.import_module(f"{spec.package}.db")
                await republish(engine, db.outbox, started, datetime.now(UTC) + timedelta(minutes=1))
        finally:
            await engine.dispose()

    asyncio.run(heal())

    def invoices() -> list[dict[str, Any]] | None:
        r = call(platform, "GET", "invoicing", "/v1/invoices?period=2026-10", tenant)
        items = r.json()["items"] if r.status_code == 200 else []
        return items if len(items) == 2 else None

    found = eventually(invoices, timeout=90)
    assert sorted(i["total"] for i in found) == ["3.00", "3.00"]
    # Everything republished was already applied elsewhere: nothing is doubled.
    time.sleep(2.0)
    assert len(call(platform, "GET", "invoicing", "/v1/invoices?period=2026-10", tenant).json()["items"]) == 2
