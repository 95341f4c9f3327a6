"""The records budget of the create-only batch endpoints: a token bucket per API key that counts
records, not requests, so a partner may send 1,000 events a second as ten 100-record batches or
as a hundred 10-record ones alike. The runtime's per-request limit still applies in front of it
(usage-ingest raises its default, see `config.Settings`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request, Response
from prometheus_client import Counter

from billing_runtime.errors import problem

RECORDS_LIMITED = Counter("billing_ingest_records_rate_limited_total", "Records refused with 429 by the per-key records budget", ["kind"])


@dataclass
class RecordBudget:
    """`rate` records a second per key, at most `burst` saved up. `take(key, n)` is 0 when the
    batch may go, else the seconds until it could (the Retry-After)."""

    rate: float
    burst: int
    now: Callable[[], float] = time.monotonic
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (tokens, updated)

    def take(self, key: str, n: int) -> int:
        now = self.now()
        tokens, updated = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if tokens >= n:
            self.buckets[key] = (tokens - n, now)
            return 0
        self.buckets[key] = (tokens, now)
        return max(1, math.ceil((n - tokens) / self.rate))


def take_records(request: Request, tenant: str, n: int, kind: str) -> Response | None:
    """Charge `n` records to the caller's key (per tenant behind a gateway): None when the batch
    may go, else the 429 problem+json (code `rate_limited`, with `Retry-After`) to answer."""
    state = request.app.state
    budget: RecordBudget | None = getattr(state, "record_budget", None)
    if budget is None:
        settings = state.runtime.settings
        budget = state.record_budget = RecordBudget(settings.records_per_second, settings.records_burst)
    principal = request.scope.get("state", {}).get("principal")
    retry_after = budget.take(f"{tenant}/{principal.key_id if principal else 'gateway'}", n)
    if not retry_after:
        return None
    RECORDS_LIMITED.labels(kind).inc(n)
    refused = problem(429, "rate_limited", f"this API key is over its {budget.rate:g} records a second; retry after the given seconds")
    refused.headers["Retry-After"] = str(retry_after)
    return refused
