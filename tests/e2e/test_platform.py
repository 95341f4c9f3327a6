"""The slice across all six services running as separate processes, as `billing up` runs them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from billing_cli.demo import run_demo
from billing_cli.ops import platform_lag
from billing_cli.platform import SERVICES, Platform
from billing_events import account_id
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port
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
    # The backlog, as `billing lag` counts it on the embedded broker (whose end offsets are wrong).
    eventually(lambda: usage_lag(platform) >= 2000, timeout=60)
    env = {**platform.env, "DATABASE_URL": platform.database_url}
    shown = subprocess.run([sys.executable, "-m", "billing_cli.main", "lag"], env=env, capture_output=True, text=True, timeout=120)
    print(f"billing lag, rating down with 4,000 records posted:\n{shown.stdout}")
    row = next(line.split() for line in shown.stdout.splitlines() if line.split()[:2] == ["rating", "billing.usage"])
    assert shown.returncode == 0 and int(row[-1]) >= 2000, shown.stdout + shown.stderr
    platform.start_service("rating")
    platform.wait_ready("rating")
    # 4,000 records × 1 GB × 0.10: every record counted once, none lost, none twice.
    assert eventually(lambda: charges(platform, tenant, "k1") == Decimal("400.00") or None, timeout=120.0)
    time.sleep(1.0)
    assert charges(platform, tenant, "k1") == Decimal("400.00")
    eventually(lambda: usage_lag(platform) == 0 or None, timeout=60)
    # ...and so does rating's billing_consumer_lag, measured by rating itself.
    eventually(lambda: _gauge(platform, "rating", "billing_consumer_lag", {"topic": "billing.usage"}) == 0, timeout=60)


def usage_lag(platform: Platform) -> int:
    rows = asyncio.run(platform_lag(platform.database_url, platform.bootstrap))
    return next(r.lag for r in rows if (r.service, r.topic) == ("rating", "billing.usage"))


def _gauge(platform: Platform, service: str, name: str, labels: dict[str, str]) -> float | None:
    text = httpx.get(platform.url(service) + "/metrics/", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


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


DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "billing-alerts.yml"


def _panel_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        stack = list(json.loads(path.read_text())["panels"])
        while stack:
            panel = stack.pop(0)
            stack.extend(panel.get("panels", []))
            found += [(path.stem, panel["title"], target["expr"]) for target in panel.get("targets", [])]
    return found


def test_every_dashboard_panel_has_a_series_in_a_real_prometheus(platform: Platform, tmp_path: Path) -> None:
    """Debian's Prometheus scrapes the six services after the runs above (and loads the alert
    rules): every panel's query answers at least one series, 0 when nothing of its kind happened,
    so an empty panel means a broken scrape, never "none yet"."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: `make tools` installs Debian's prometheus package")
    for spec in SERVICES:  # one an earlier test left stopped
        process = platform.processes.get(spec.name)
        if process is None or process.poll() is not None:
            platform.start_service(spec.name)
            platform.wait_ready(spec.name)
    port = free_port()
    targets = [{"targets": [f"127.0.0.1:{platform.port(spec)}"], "labels": {"service": spec.name}} for spec in SERVICES]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "billing", "metrics_path": "/metrics/", "honor_labels": True, "static_configs": targets}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[Any]:
        r = httpx.get(f"{api}/query", params={"query": expr}, timeout=10)
        assert r.status_code == 200, (expr, r.text)
        result: list[Any] = r.json()["data"]["result"]
        return result

    try:
        # Every target scraped a few times: a rate needs two samples in its window.
        eventually(lambda: _scraped(api), timeout=60)
        queries = [(d, title, expr.replace("$__rate_interval", "1m").replace("$__range", "5m")) for d, title, expr in _panel_queries()]
        assert len(queries) > 100

        def empty() -> list[str]:
            return [f"{d} / {title}: {expr}" for d, title, expr in queries if not query(expr)]

        missing = empty()
        deadline = time.monotonic() + 30
        while missing and time.monotonic() < deadline:  # a panel over a gauge set by a loop every few seconds
            time.sleep(1.0)
            missing = empty()
        assert not missing, f"{len(missing)} of {len(queries)} panel queries answer no series:\n" + "\n".join(missing)
        rules = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        assert {rule["name"] for group in rules for rule in group["rules"]} >= {"BillingServiceDown", "BillingConsumerLagHigh"}
        assert all(rule["health"] != "err" for group in rules for rule in group["rules"]), rules
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _scraped(api: str) -> bool:
    """Every target scraped a few times (Prometheus answers 503 until it has started)."""
    with contextlib.suppress(httpx.HTTPError):
        r = httpx.get(f"{api}/query", params={"query": 'count_over_time(up{job="billing"}[1m]) >= 3 and up{job="billing"} == 1'}, timeout=10)
        return r.status_code == 200 and len(r.json()["data"]["result"]) == len(SERVICES)
    return False
