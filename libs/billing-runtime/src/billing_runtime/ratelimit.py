"""Token buckets, in memory (each instance limits what it serves): one per API key after
authentication, and per client address before it (shared links, webhooks, refused keys)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

RATE_LIMITED = Counter("billing_http_rate_limited_total", "Requests refused with 429", ["service"])
PREAUTH_LIMITED = Counter(
    "billing_http_preauth_rate_limited_total", "Requests refused with 429 before authentication, per client address", ["service", "reason"]
)

# Buckets are pruned (the full ones dropped: a full bucket is the same as none) once there are this
# many, so a flood of addresses cannot grow memory without bound.
PRUNE_AT = 10_000


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

    def _refill(self, key: str) -> _Bucket:
        now = self.now()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= PRUNE_AT:
                self._prune(now)
            bucket = self.buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def _retry_after(self, bucket: _Bucket) -> int:
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def take(self, key: str) -> int:
        bucket = self._refill(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return self._retry_after(bucket)

    def blocked(self, key: str) -> int:
        """As `take`, without spending a token: 0 when a token is there, else the Retry-After."""
        if key not in self.buckets:
            return 0
        bucket = self._refill(key)
        return 0 if bucket.tokens >= 1.0 else self._retry_after(bucket)

    def _prune(self, now: float) -> None:
        full = [k for k, b in self.buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for k in full:
            del self.buckets[k]
