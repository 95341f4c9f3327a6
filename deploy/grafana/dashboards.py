"""The Grafana dashboards of the billing platform, as code. Writes one JSON file per dashboard
into `dashboards/` (what Grafana's file provisioning loads); `--check` exits 1 when a committed
file differs from what this script makes.

    python deploy/grafana/dashboards.py --write
    python deploy/grafana/dashboards.py --check

Every query reads the Prometheus datasource with the fixed uid `billing-prometheus`
(provisioning/datasources/prometheus.yaml); every metric a query names is one a service exports
(tests/ops/test_dashboards.py scrapes the running services to make sure).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "billing-prometheus"}
HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RANGE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("billing",))


def rate(metric: str, by: str = "", matcher: str = "") -> str:
    sel = f"{metric}{{{matcher}}}" if matcher else metric
    inner = f"rate({sel}[{RANGE}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def increase(metric: str, by: str = "", matcher: str = "") -> str:
    sel = f"{metric}{{{matcher}}}" if matcher else metric
    inner = f"increase({sel}[$__range])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: float, histogram: str, by: str = "", matcher: str = "") -> str:
    sel = f"{histogram}_bucket{{{matcher}}}" if matcher else f"{histogram}_bucket"
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({sel}[{RANGE}])))"


def http_row(service: str | None = None) -> Row:
    matcher = f'service="{service}"' if service else ""
    by = "route" if service else "service"
    return Row(
        f"HTTP: {service}" if service else "HTTP",
        (
            Panel("Requests per second", ((rate("billing_http_requests_total", by, matcher), f"{{{{{by}}}}}"),), "reqps"),
            Panel(
                "Error ratio (5xx)",
                (
                    (
                        f'sum by ({by}) (rate(billing_http_requests_total{{{matcher + "," if matcher else ""}status=~"5.."}}[{RANGE}]))'
                        f" / sum by ({by}) (rate(billing_http_requests_total{{{matcher}}}[{RANGE}]))",
                        f"{{{{{by}}}}}",
                    ),
                ),
                "percentunit",
            ),
            Panel(
                "Latency p95",
                ((quantile(0.95, "billing_http_request_duration_seconds", by, matcher), f"{{{{{by}}}}}"),),
                "s",
            ),
            Panel(
                "Client errors (4xx) per second",
                ((rate("billing_http_requests_total", "status", (matcher + "," if matcher else "") + 'status=~"4.."'), "{{status}}"),),
                "reqps",
            ),
        ),
    )


def events_row(service: str | None = None) -> Row:
    matcher = f'service="{service}"' if service else ""
    by = "type" if service else "service"
    return Row(
        f"Events: {service}" if service else "Events between services",
        (
            Panel("Events applied per second", ((rate("billing_events_applied_total", by, matcher), f"{{{{{by}}}}}"),), "ops"),
            Panel("Duplicates skipped per second", ((rate("billing_events_duplicate_total", by, matcher), f"{{{{{by}}}}}"),), "ops"),
            Panel(
                "Dead-lettered (range)",
                ((increase("billing_events_dead_lettered_total", by, matcher), f"{{{{{by}}}}}"),),
                "short",
                "stat",
                "Events a consumer could not apply; they are on billing.deadletter with their error.",
            ),
            Panel(
                "Consumer lag",
                (
                    (
                        f"max by (service, topic) (billing_consumer_lag{{{matcher}}})" if matcher else "max by (service, topic) (billing_consumer_lag)",
                        "{{service}} {{topic}}",
                    ),
                ),
                "short",
            ),
            Panel(
                "Outbox backlog",
                ((f"max by (service) (billing_outbox_backlog{{{matcher}}})" if matcher else "max by (service) (billing_outbox_backlog)", "{{service}}"),),
                "short",
            ),
            Panel("Published per second", ((rate("billing_outbox_events_published_total", "topic", matcher), "{{topic}}"),), "ops"),
        ),
    )


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "billing-overview",
        "Billing / Overview",
        "Every service at a glance: HTTP, events between services, money in and out.",
        (
            http_row(),
            events_row(),
            Row(
                "Business",
                (
                    Panel("Usage records accepted per second", ((rate("billing_ingest_records_total", "kind", 'status="accepted"'), "{{kind}}"),), "ops"),
                    Panel("Invoices issued (range)", ((increase("billing_invoices_issued_total", "currency"), "{{currency}}"),), "short", "stat"),
                    Panel("Amount invoiced (range)", ((increase("billing_invoiced_amount_total", "currency"), "{{currency}}"),), "short", "stat"),
                    Panel("Amount collected (range)", ((increase("billing_collected_amount_total", "currency"), "{{currency}}"),), "short", "stat"),
                ),
            ),
        ),
    ),
    Dashboard(
        "billing-ingest",
        "Billing / Ingest",
        "What partners post: records accepted, duplicates, rejections; usage-ingest's HTTP and outbox.",
        (
            Row(
                "Records",
                (
                    Panel("Records per second by outcome", ((rate("billing_ingest_records_total", "status"), "{{status}}"),), "ops"),
                    Panel("Records per second by kind", ((rate("billing_ingest_records_total", "kind"), "{{kind}}"),), "ops"),
                    Panel(
                        "Rejected ratio",
                        (
                            (
                                f'sum(rate(billing_ingest_records_total{{status="rejected"}}[{RANGE}])) / sum(rate(billing_ingest_records_total[{RANGE}]))',
                                "rejected",
                            ),
                        ),
                        "percentunit",
                    ),
                    Panel("Duplicates (range)", ((increase("billing_ingest_records_total", "kind", 'status="duplicate"'), "{{kind}}"),), "short", "stat"),
                ),
            ),
            http_row("usage-ingest"),
            events_row("usage-ingest"),
        ),
    ),
    Dashboard(
        "billing-rating",
        "Billing / Rating and bill runs",
        "Rating's projections of orders and usage, bill runs, what could not be rated.",
        (
            Row(
                "Bill runs",
                (
                    Panel("Bill runs by outcome (range)", ((increase("billing_bill_runs_total", "outcome"), "{{outcome}}"),), "short", "stat"),
                    Panel(
                        "Bill-run duration",
                        (
                            (quantile(0.5, "billing_bill_run_duration_seconds"), "p50"),
                            (quantile(0.95, "billing_bill_run_duration_seconds"), "p95"),
                        ),
                        "s",
                    ),
                    Panel("Lines rated per second", ((rate("billing_rated_lines_total"), "lines"),), "ops"),
                    Panel("Unrated charges by reason (range)", ((increase("billing_unrated_charges_total", "reason"), "{{reason}}"),), "short", "stat"),
                ),
            ),
            Row(
                "Projections and catalogue",
                (
                    Panel("Events projected per second", ((rate("billing_rating_projected_total", "kind"), "{{kind}}"),), "ops"),
                    Panel("Product PUTs by outcome", ((rate("billing_catalogue_products_put_total", "outcome"), "{{outcome}}"),), "ops"),
                ),
            ),
            http_row("rating"),
            events_row("rating"),
        ),
    ),
    Dashboard(
        "billing-invoicing",
        "Billing / Invoicing",
        "Invoices issued and settled, amounts billed and collected by currency.",
        (
            Row(
                "Invoices",
                (
                    Panel("Invoices issued per second", ((rate("billing_invoices_issued_total", "currency"), "{{currency}}"),), "ops"),
                    Panel("Amount invoiced (range)", ((increase("billing_invoiced_amount_total", "currency"), "{{currency}}"),), "short", "stat"),
                    Panel("Lines per invoice p95", ((quantile(0.95, "billing_invoice_lines"), "p95"),), "short"),
                    Panel("Invoices settled (range)", ((increase("billing_invoices_settled_total", "currency"), "{{currency}}"),), "short", "stat"),
                    Panel("Payments applied per second", ((rate("billing_invoice_payments_applied_total", "currency"), "{{currency}}"),), "ops"),
                    Panel("Amount collected (range)", ((increase("billing_collected_amount_total", "currency"), "{{currency}}"),), "short", "stat"),
                ),
            ),
            http_row("invoicing"),
            events_row("invoicing"),
        ),
    ),
    Dashboard(
        "billing-collections",
        "Billing / Collections and dunning",
        "Payments by provider and outcome, dunning cases, steps, suspensions.",
        (
            Row(
                "Payments",
                (
                    Panel("Payments by provider and outcome", ((rate("billing_payments_total", "provider, outcome"), "{{provider}} {{outcome}}"),), "ops"),
                    Panel("Amount received (range)", ((increase("billing_payments_collected_amount_total", "currency"), "{{currency}}"),), "short", "stat"),
                    Panel(
                        "Collection attempts by provider and outcome",
                        ((rate("billing_payment_attempts_total", "provider, outcome"), "{{provider}} {{outcome}}"),),
                        "ops",
                        description="Card and direct-debit attempts settled: succeeded, failed, reversed.",
                    ),
                    Panel(
                        "Failed collection ratio by provider",
                        (
                            (
                                f'sum by (provider) (rate(billing_payment_attempts_total{{outcome="failed"}}[{RANGE}]))'
                                f" / sum by (provider) (rate(billing_payment_attempts_total[{RANGE}]))",
                                "{{provider}}",
                            ),
                        ),
                        "percentunit",
                    ),
                    Panel(
                        "Open attempts by state",
                        (("max by (provider, status) (billing_payment_attempts_open)", "{{provider}} {{status}}"),),
                        "short",
                        description="Attempts not final: pending (not sent yet), processing (the provider has not decided), unknown (no answer).",
                    ),
                    Panel(
                        "Oldest unknown payment outcome",
                        (("max by (provider) (billing_payment_attempt_unknown_oldest_seconds)", "{{provider}}"),),
                        "s",
                        description="Alert above 900 s: payments cannot learn from the provider whether it charged (services/payments/README).",
                    ),
                    Panel(
                        "Second successes by what became of the surplus (range)",
                        ((increase("billing_payment_surplus_total", "provider, action"), "{{provider}} {{action}}"),),
                        "short",
                        "stat",
                    ),
                    Panel(
                        "Provider calls by result",
                        ((rate("billing_payment_provider_calls_total", "provider, operation, result"), "{{provider}} {{operation}} {{result}}"),),
                        "ops",
                    ),
                    Panel(
                        "Refunds by provider and outcome (range)",
                        ((increase("billing_refunds_total", "provider, outcome"), "{{provider}} {{outcome}}"),),
                        "short",
                        "stat",
                    ),
                    Panel(
                        "Provider webhooks by effect", ((rate("billing_payment_webhook_events_total", "provider, effect"), "{{provider}} {{effect}}"),), "ops"
                    ),
                    Panel(
                        "Bank statement lines by match (range)", ((increase("billing_statement_lines_total", "matched_by"), "{{matched_by}}"),), "short", "stat"
                    ),
                ),
            ),
            Row(
                "Dunning",
                (
                    Panel(
                        "Cases opened and closed",
                        ((rate("billing_dunning_cases_opened_total"), "opened"), (rate("billing_dunning_cases_closed_total"), "closed")),
                        "ops",
                    ),
                    Panel("Cases closed by reason (range)", ((increase("billing_dunning_cases_closed_total", "reason"), "{{reason}}"),), "short", "stat"),
                    Panel("Open cases by step", (("max by (step) (billing_dunning_open_cases)", "{{step}}"),), "short"),
                    Panel(
                        "Dunning steps reached by action (range)", ((increase("billing_dunning_steps_reached_total", "action"), "{{action}}"),), "short", "stat"
                    ),
                    Panel("Payment failures seen by dunning", ((rate("billing_dunning_payment_failures_total", "reason_code"), "{{reason_code}}"),), "ops"),
                    Panel("Payment retries requested (range)", ((increase("billing_dunning_payment_retries_requested_total"), "retries"),), "short", "stat"),
                    Panel(
                        "Suspensions and reinstatements (range)",
                        (
                            (increase("billing_dunning_suspensions_total", "kind"), "suspended {{kind}}"),
                            (increase("billing_dunning_reinstatements_total"), "reinstated"),
                        ),
                        "short",
                        "stat",
                    ),
                ),
            ),
            http_row("payments"),
            events_row("payments"),
            events_row("dunning"),
        ),
    ),
    Dashboard(
        "billing-notifications",
        "Billing / Notifications",
        "Emails and partner webhooks sent, retried and failed; hand-over times; notify's consumers.",
        (
            Row(
                "Emails",
                (
                    Panel("Emails by outcome", ((rate("billing_emails_total", "outcome"), "{{outcome}}"),), "ops"),
                    Panel("Emails by template (range)", ((increase("billing_emails_total", "template", 'outcome="sent"'), "{{template}}"),), "short", "stat"),
                    Panel("Failed emails (range)", ((increase("billing_emails_total", "template", 'outcome="failed"'), "{{template}}"),), "short", "stat"),
                    Panel("SMTP hand-over p95", ((quantile(0.95, "billing_email_send_seconds", "outcome"), "{{outcome}}"),), "s"),
                ),
            ),
            Row(
                "Webhooks",
                (
                    Panel("Webhook deliveries by outcome", ((rate("billing_webhooks_total", "outcome"), "{{outcome}}"),), "ops"),
                    Panel("Failed webhooks (range)", ((increase("billing_webhooks_total", matcher='outcome="failed"'), "failed"),), "short", "stat"),
                    Panel("Webhook POST p95", ((quantile(0.95, "billing_webhook_send_seconds", "outcome"), "{{outcome}}"),), "s"),
                ),
            ),
            http_row("notify"),
            events_row("notify"),
        ),
    ),
)


# Which service exports a metric, by name prefix (the runtime's metrics carry a `service` label).
OWNERS: tuple[tuple[str, str], ...] = (
    ("billing_ingest_", "usage-ingest"),
    ("billing_bill_run", "rating"),
    ("billing_rated_", "rating"),
    ("billing_unrated_", "rating"),
    ("billing_catalogue_", "rating"),
    ("billing_rating_", "rating"),
    ("billing_scheduled_", "rating"),
    ("billing_discounts_", "rating"),
    ("billing_invoice", "invoicing"),
    ("billing_collected_", "invoicing"),
    ("billing_credit", "invoicing"),
    ("billing_document", "invoicing"),
    ("billing_periods_", "invoicing"),
    ("billing_payment", "payments"),
    ("billing_refund", "payments"),
    ("billing_statement_", "payments"),
    ("billing_buyer_", "payments"),
    ("billing_dunning_", "dunning"),
    ("billing_email", "notify"),
    ("billing_webhook", "notify"),
    ("billing_deliver", "notify"),
)


def zero_when_none(expr: str) -> str:
    """`expr`, or a single 0 when it selects nothing while the service that exports its metric is
    scraped: a panel says 0 when none of its events happened, and "no data" only when the scrape
    is broken (then `billing_http_requests_in_progress`, set by the scrape's own request, is absent)."""
    named = re.search(r'service="([^"]+)"', expr)
    service = named.group(1) if named else next((owner for prefix, owner in OWNERS if re.search(rf"\b{prefix}", expr)), None)
    scraped = f'billing_http_requests_in_progress{{service="{service}"}}' if service else "billing_http_requests_in_progress"
    return f"({expr}) or on() (0 * max({scraped}))"


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}} if panel.kind == "stat" else {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": zero_when_none(expr), "legendFormat": legend, "range": True}
            for i, (expr, legend) in enumerate(panel.exprs)
        ],
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in dashboard.rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, panel in enumerate(row.panels):
            panels.append(_panel_json(panel, pid, (i % 3) * 8, y + (i // 3) * 8))
            pid += 1
        y += ((len(row.panels) + 2) // 3) * 8
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["billing"], "asDropdown": True, "title": "Billing"}],
        "panels": panels,
    }


def files() -> dict[Path, str]:
    return {OUT / f"{d.uid}.json": json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the dashboards' JSON files")
    mode.add_argument("--check", action="store_true", help="exit 1 when a committed file is stale or missing")
    args = parser.parse_args(argv)
    wanted = files()
    if args.write:
        OUT.mkdir(parents=True, exist_ok=True)
        for stale in set(OUT.glob("*.json")) - set(wanted):
            stale.unlink()
        for path, text in wanted.items():
            path.write_text(text)
        return 0
    problems = [p.name for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    problems += [p.name + " (no longer generated)" for p in set(OUT.glob("*.json")) - set(wanted)]
    for name in problems:
        print(f"stale: {name}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
