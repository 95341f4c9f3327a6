"""The slice across all six services running as separate processes, as `billing up` runs them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from billing_cli.demo import run_demo
from billing_cli.ops import platform_lag
from billing_cli.platform import SERVICES, Platform
from billing_events import account_id
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port
from billing_runtime.kafka import ensure_topics
from billing_runtime.outbox import republish
from billing_runtime.testing import eventually_sync, every_record


def call(platform: Platform, method: str, service: str, path: str, tenant: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, platform.url(service) + path, json=body, headers={"X-Tenant-Id": tenant}, timeout=30)


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


def _en16931() -> Any:
    """services/invoicing/tests/en16931.py (the official EN 16931 rules run with saxonche), loaded by path: tests run in importlib mode."""
    import importlib.util

    path = Path(__file__).parents[2] / "services" / "invoicing" / "tests" / "en16931.py"
    spec = importlib.util.spec_from_file_location("invoicing_en16931", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_invoice_and_credit_note_of_the_month_passes_en16931(platform: Platform) -> None:
    """After the demo's month: each partner's invoices and their credit notes, downloaded as CII
    (the Factur-X XML) and as UBL, pass the official EN 16931 rules with no error and no warning."""
    from billing_cli.demo import EXPECTED

    en16931 = _en16931()
    checked: list[str] = []
    problems: list[str] = []
    for tenant in sorted({e.partner for e in EXPECTED}):
        listed = call(platform, "GET", "invoicing", "/v1/invoices?limit=200", tenant)
        assert listed.status_code == 200, listed.text
        documents = [("invoices", i["id"], i["number"]) for i in listed.json()["items"]]
        for _, invoice_id, _ in list(documents):
            notes = call(platform, "GET", "invoicing", f"/v1/invoices/{invoice_id}/credit-notes", tenant)
            assert notes.status_code == 200, notes.text
            documents += [("credit-notes", n["id"], n["number"]) for n in notes.json()["items"]]
        for path, owner_id, number in documents:
            for syntax in ("cii", "ubl"):
                r = call(platform, "GET", "invoicing", f"/v1/{path}/{owner_id}/xml?syntax={syntax}", tenant)
                assert r.status_code == 200, (number, syntax, r.text)
                problems += [f"{tenant} {number} {syntax}: {p}" for p in en16931.findings(r.content, syntax)]
                checked.append(f"{number}/{syntax}")
    assert not problems, "\n".join(problems)
    assert len(checked) >= 2 * len(EXPECTED), checked


def test_no_secret_issued_in_the_run_is_anywhere_in_the_clear(platform: Platform) -> None:
    """After the demo's month (providers configured for both partners) and a partner that also
    registers and rotates webhook endpoints and calls with an API key: no provider secret, webhook
    secret or API key is in any table of any schema, any message of any topic, the services' logs
    or the mail folder (each may show its last four characters, nothing more)."""
    tenant = f"scan-{uuid.uuid4().hex[:8]}"
    found_secrets = {f"sk_test_{t}" for t in ("northwind-it", "cloudy-ltd")} | {f"sandbox_{t}" for t in ("northwind-it", "cloudy-ltd")}
    stripe_key, gc_token, gc_secret = f"sk_test_{tenant}", f"sandbox_{tenant}", f"gc-scan-{secrets.token_hex(20)}"
    stripe_http = httpx.Client(base_url=platform.provider_url("stripe"), headers={"Authorization": f"Bearer {stripe_key}"})
    hook = f"{platform.url('payments')}/v1/webhooks/stripe/{tenant}"
    stripe_secret = stripe_http.post("/v1/webhook_endpoints", data={"url": hook}).json()["secret"]
    answers: list[tuple[str, str]] = []
    gc_auth = {"Authorization": f"Bearer {gc_token}"}
    gc_hook = {"url": f"{platform.url('payments')}/v1/webhooks/gocardless/{tenant}", "secret": gc_secret}
    assert httpx.post(f"{platform.provider_url('gocardless')}/_sandbox/webhook_endpoints", json=gc_hook, headers=gc_auth).status_code < 300
    for provider, key, secret in (("stripe", stripe_key, stripe_secret), ("gocardless", gc_token, gc_secret)):
        body = {"api_key": key, "webhook_secret": secret}
        r = httpx.put(platform.url("payments") + f"/v1/providers/{provider}", json=body, headers={"X-Tenant-Id": tenant, "Idempotency-Key": f"p-{provider}"})
        assert r.status_code == 200, r.text
        # Refused (too short): the answer is scanned with the rest.
        short = httpx.put(platform.url("payments") + f"/v1/providers/{provider}", json={**body, "webhook_secret": secret[:20]}, headers={"X-Tenant-Id": tenant})
        answers.append((f"answer PUT /v1/providers/{provider} {short.status_code}", short.text))
        found_secrets.add(secret[:20])
    found_secrets |= {stripe_key, stripe_secret, gc_token, gc_secret}
    # A card and a mandate set up through both providers (their calls made with the sealed keys).
    for method in ({"id": "scan-card", "type": "card"}, {"id": "scan-dd", "type": "direct_debit", "name": "Scan Ltd", "currency": "EUR"}):
        r = call(platform, "POST", "payments", f"/v1/accounts/{account_id(tenant, 'c-1')}/payment-methods", tenant, method)
        assert r.status_code == 201, r.text
    for n in (1, 2):
        body = {"url": f"http://127.0.0.1:{platform.port(SERVICES[0])}/hooks/{n}", "event_types": ["*"]}
        r = httpx.post(platform.url("notify") + "/v1/webhook-endpoints", json=body, headers={"X-Tenant-Id": tenant, "Idempotency-Key": f"ep-{n}"})
        assert r.status_code == 201, r.text
        rotated = call(platform, "POST", "notify", f"/v1/webhook-endpoints/{r.json()['endpoint_id']}/rotate-secret", tenant, {"grace_seconds": 60})
        found_secrets |= {r.json()["secret"], rotated.json()["secret"]}

    async def api_key() -> str:
        from billing_runtime.auth import issue

        engine = create_engine(platform.database_url, pool_size=1)
        try:
            return (await issue(engine, platform.bootstrap, tenant, "read", label="scan", now=datetime.now(UTC))).key
        finally:
            await engine.dispose()

    key = asyncio.run(api_key())
    found_secrets |= {key, key.rsplit("_", 1)[1]}
    assert httpx.get(platform.url("payments") + "/v1/providers/stripe", headers={"Authorization": f"Bearer {key}", "X-Tenant-Id": tenant}).status_code < 500

    places = answers + asyncio.run(_everything_stored(platform))
    leaks = sorted({(where, s[:12] + "…") for where, content in places for s in found_secrets if s in content})
    assert leaks == [], leaks
    scanned = {where for where, _ in places}
    assert {"table payments.provider_account", "table notify.webhook_endpoint", "table payments.audit_log", "log payments"} <= scanned
    assert any(where.startswith("topic ") for where in scanned)


async def _everything_stored(platform: Platform) -> list[tuple[str, str]]:
    """(where, text) for every row of every table of every schema, every message on every topic,
    every service log and every mail file."""
    places: list[tuple[str, str]] = []
    engine = create_engine(platform.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
                        "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
                    )
                )
            ).all()
            for schema, table in tables:
                columns = (
                    await conn.execute(
                        text("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"),
                        {"s": schema, "t": table},
                    )
                ).all()
                shown = [f"encode(\"{c}\", 'escape')" if kind == "bytea" else f'"{c}"::text' for c, kind in columns]
                for row in (await conn.execute(text(f'SELECT {", ".join(shown)} FROM "{schema}"."{table}"'))).all():
                    places.append((f"table {schema}.{table}", "\x1f".join(v for v in row if v is not None)))
    finally:
        await engine.dispose()
    for m in await every_record(platform.bootstrap):
        parts = [m.key or b"", m.value or b"", *[v or b"" for _, v in (m.headers or [])]]
        places.append((f"topic {m.topic}", b"\x1f".join(parts).decode("utf-8", "replace")))
    logs = platform.state_dir / "logs"
    for spec in SERVICES:
        places.append((f"log {spec.name}", (logs / f"{spec.name}.log").read_text(errors="replace")))
    for path in sorted(p for p in platform.maildir.rglob("*") if p.is_file()):
        places.append((f"mail {path.name}", path.read_bytes().decode("utf-8", "replace")))
    return places


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
    eventually_sync(lambda: usage_lag(platform) >= 2000, timeout=60)
    env = {**platform.env, "DATABASE_URL": platform.database_url}
    shown = subprocess.run([sys.executable, "-m", "billing_cli.main", "lag"], env=env, capture_output=True, text=True, timeout=120)
    print(f"billing lag, rating down with 4,000 records posted:\n{shown.stdout}")
    row = next(line.split() for line in shown.stdout.splitlines() if line.split()[:2] == ["rating", "billing.usage"])
    assert shown.returncode == 0 and int(row[-1]) >= 2000, shown.stdout + shown.stderr
    platform.start_service("rating")
    platform.wait_ready("rating")
    # 4,000 records × 1 GB × 0.10: every record counted once, none lost, none twice.
    # Every usage event of the outbox is in rating's inbox (recorded in the transaction that
    # applied it): nothing is still to come that could count a record twice.
    eventually_sync(lambda: usage_lag(platform) == 0 or None, timeout=120)
    assert charges(platform, tenant, "k1") == Decimal("400.00")
    # ...and so does rating's billing_consumer_lag, measured by rating itself.
    eventually_sync(lambda: _gauge(platform, "rating", "billing_consumer_lag", {"topic": "billing.usage"}) == 0, timeout=60)


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
    eventually_sync(lambda: charges(platform, tenant, "r1") == Decimal("3.0") and charges(platform, tenant, "r2") == Decimal("3.0"), timeout=60)

    # invoicing is down when the period closes, so PeriodClosed waits on the topic for it...
    platform.stop_service("invoicing")
    r = call(platform, "POST", "rating", "/v1/bill-runs", tenant, {"period": "2026-10"})
    assert r.status_code == 201, r.text
    eventually_sync(lambda: period_closed_sent(platform, tenant), timeout=60)  # PeriodClosed is on the topic
    # ...and the broker restarts, losing every topic and message (Tansu keeps nothing). Killed: a
    # terminated Tansu waits 5 s for the services' connections to close before it exits.
    assert platform.broker is not None and platform.broker.process is not None
    platform.broker.process.kill()
    platform.broker.process.wait()
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

    found = eventually_sync(invoices, timeout=90)
    assert sorted(i["total"] for i in found) == ["3.00", "3.00"]
    # Everything republished was already applied elsewhere: nothing is doubled. Once every period
    # event of the outboxes is in invoicing's inbox, a republished copy still on the topic is
    # skipped by that inbox: the count is final.
    eventually_sync(lambda: lag_of(platform, "invoicing", "billing.periods") == 0 or None, timeout=60)
    assert len(call(platform, "GET", "invoicing", "/v1/invoices?period=2026-10", tenant).json()["items"]) == 2


def period_closed_sent(platform: Platform, tenant: str) -> bool:
    """Whether rating's relay has published the tenant's PeriodClosed (its outbox row is sent)."""

    async def probe() -> bool:
        engine = create_engine(platform.database_url)
        try:
            async with engine.connect() as conn:
                sent = await conn.scalar(
                    text(
                        "SELECT count(*) FROM rating.outbox WHERE event_type = 'billing.period.closed.v1' AND sent_at IS NOT NULL "
                        "AND headers::text LIKE :tenant"
                    ),
                    {"tenant": f'%"{tenant}"%'},
                )
        finally:
            await engine.dispose()
        return bool(sent)

    return asyncio.run(probe())


def lag_of(platform: Platform, service: str, topic: str) -> int:
    rows = asyncio.run(platform_lag(platform.database_url, platform.bootstrap))
    return next(r.lag for r in rows if (r.service, r.topic) == (service, topic))


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


@pytest.fixture(scope="module", autouse=True)
def prometheus(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus scraping the six services (and loading the alert rules) from the
    module's start, so the dashboard test finds it has long scraped them: a Prometheus applies its
    first targets only after its 5-second discovery tick. Its query API."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: `make tools` installs Debian's prometheus package")
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    targets = [{"targets": [f"127.0.0.1:{platform.port(spec)}"], "labels": {"service": spec.name}} for spec in SERVICES]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "billing", "metrics_path": "/metrics/", "honor_labels": True, "static_configs": targets}],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (folder / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}/api/v1"
        finally:
            server.terminate()
            server.wait(30)


def test_every_dashboard_panel_has_a_series_in_a_real_prometheus(platform: Platform, prometheus: str) -> None:
    """Debian's Prometheus scrapes the six services after the runs above (and loads the alert
    rules): every panel's query answers at least one series, 0 when nothing of its kind happened,
    so an empty panel means a broken scrape, never "none yet"."""
    for spec in SERVICES:  # one an earlier test left stopped
        process = platform.processes.get(spec.name)
        if process is None or process.poll() is not None:
            platform.start_service(spec.name)
            platform.wait_ready(spec.name)
    api = httpx.Client(base_url=prometheus, timeout=10)

    def query(expr: str) -> list[Any]:
        r = api.get("/query", params={"query": expr})
        assert r.status_code == 200, (expr, r.text)
        result: list[Any] = r.json()["data"]["result"]
        return result

    with api:
        # Every target answering and scraped a few times in the last minute: a rate needs two samples in its window.
        eventually_sync(lambda: _scraped(api), timeout=60)
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
        rules = api.get("/rules").json()["data"]["groups"]
        assert {rule["name"] for group in rules for rule in group["rules"]} >= {"BillingServiceDown", "BillingConsumerLagHigh"}
        assert all(rule["health"] != "err" for group in rules for rule in group["rules"]), rules


def _scraped(api: httpx.Client) -> bool:
    """Every target scraped a few times (Prometheus answers 503 until it has started)."""
    with contextlib.suppress(httpx.HTTPError):
        r = api.get("/query", params={"query": 'count_over_time(up{job="billing"}[1m]) >= 3 and up{job="billing"} == 1'})
        return r.status_code == 200 and len(r.json()["data"]["result"]) == len(SERVICES)
    return False
