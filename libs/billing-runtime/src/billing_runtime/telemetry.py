"""Telemetry every service app gets from `create_app`: traces (see `tracing.py`) and the HTTP
metrics on `/metrics`.

| metric | type | labels |
|---|---|---|
| `billing_http_requests_total` | counter | `service`, `method`, `route` (the route template), `status` |
| `billing_http_request_duration_seconds` | histogram | `service`, `method`, `route` |
| `billing_http_requests_in_progress` | gauge | `service` |

The route label is the template (`/v1/invoices/{invoice_id}`), never the raw path, so the series
stay few; a request that matched no route counts as `unmatched`.

`start_at_zero(counter, values, ...)` creates a counter's series for its known label values at 0
(the services call it where they define their counters), so dashboards say 0 for "none happened".
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_runtime.tracing import instrument_app, setup_tracing

HTTP_REQUESTS = Counter("billing_http_requests_total", "HTTP requests served, by route and status", ["service", "method", "route", "status"])
HTTP_DURATION = Histogram(
    "billing_http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
HTTP_IN_PROGRESS = Gauge("billing_http_requests_in_progress", "HTTP requests being answered", ["service"])


def start_at_zero(metric: MetricWrapperBase, *label_values: Iterable[str]) -> None:
    """Create the series of every combination of the known label values at 0, so a dashboard
    panel says 0 when nothing of its kind happened (rather than "no data", which is what a broken
    scrape looks like too). Label values only known at run time (currencies, reason codes) stay
    created on first use."""
    for values in itertools.product(*label_values):
        metric.labels(*values)


class HttpMetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no body buffering, streaming untouched)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        in_progress = HTTP_IN_PROGRESS.labels(self.service)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            in_progress.dec()
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_DURATION.labels(self.service, method, route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def setup_telemetry(app: FastAPI, service: str, otlp_endpoint: str | None) -> None:
    """Tracing (when configured) and HTTP metrics for one service's app."""
    provider = setup_tracing(service, otlp_endpoint)
    app.add_middleware(HttpMetricsMiddleware, service=service)
    # Added last, so the server span is the outermost and the metrics middleware runs inside it.
    instrument_app(app, provider)
