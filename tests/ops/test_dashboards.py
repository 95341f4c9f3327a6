"""The Grafana dashboards query only metrics the services really export, and the committed
JSON is what deploy/grafana/dashboards.py makes."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from billing_cli.platform import SERVICES
from billing_runtime.testing import serve_all

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCE_UID = "billing-prometheus"

# Words of PromQL that look like metric names: functions are followed by "(" and caught apart.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors: [5m], [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def exported_series(exposition: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_exprs() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
    return found


def _panels(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in node.get("panels", []):
        out.append(panel)
        out.extend(_panels(panel))
    return out


def test_metric_name_parser() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{service="x",le=~"1"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / sum by (service) (rate(b_total{status=~'5..'}[5m])) and on(service) c") == {"a_total", "b_total", "c"}
    assert metric_names("max by (service, topic) (billing_consumer_lag)") == {"billing_consumer_lag"}


def test_committed_dashboards_are_generated() -> None:
    result = subprocess.run([sys.executable, str(GRAFANA / "dashboards.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, f"run `python deploy/grafana/dashboards.py --write`:\n{result.stderr}"


def test_dashboards_are_complete_and_use_the_fixed_datasource() -> None:
    titles = {json.loads(p.read_text())["uid"] for p in (GRAFANA / "dashboards").glob("*.json")}
    assert titles == {"billing-overview", "billing-ingest", "billing-rating", "billing-invoicing", "billing-collections", "billing-notifications"}
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [d["uid"] for d in datasources] == [DATASOURCE_UID]
    for path in (GRAFANA / "dashboards").glob("*.json"):
        for panel in _panels(json.loads(path.read_text())):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])


async def test_every_dashboard_metric_is_exported_by_a_running_service(migrated: str, kafka_bootstrap: str) -> None:
    exported: set[str] = set()
    apps = {
        spec.name: importlib.import_module(f"{spec.package}.main").build(
            importlib.import_module(f"{spec.package}.config").Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap)
        )
        for spec in SERVICES
    }
    async with serve_all(apps) as clients:  # started side by side: each start waits on the broker
        for name, client in clients.items():
            assert (await client.get("/healthz")).status_code == 200
            scraped = await client.get("/metrics", follow_redirects=True)
            assert scraped.status_code == 200, name
            exported |= exported_series(scraped.text)
    assert "billing_http_requests_total" in exported
    missing = sorted(f"{dashboard} / {panel}: {name}" for dashboard, panel, expr in dashboard_exprs() for name in metric_names(expr) if name not in exported)
    assert not missing, "dashboards query metrics no service exports:\n" + "\n".join(missing)
