"""Per-key rate limits: a token bucket per API key, in memory (each instance limits what it serves)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

RATE_LIMITED = Counter("billing_http_rate_limited_total", "Requests refused with 429", ["service"])


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """`rate` tokens a second, at most `burst` saved up. `take(key)` is 0 when the request may go,
    else the seconds until it could (the Retry-After)."""

    rate: float
    burst: int
    now: Callable[[], float] = time.monotonic
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str) -> int:
        now = self.now()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
