"""The loop that sends waiting attempts and refunds, reconciles the unknown and undecided ones,
and keeps the gauges of open attempts current."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from billing_runtime.service import ServiceRuntime
from payments.collection.service import Reconciling, call_next_attempt, measure_open_attempts
from payments.config import Settings
from payments.providers.gateways import Gateways
from payments.refund.service import call_next_refund

GAUGE_INTERVAL_SECONDS = 5.0


def collector(runtime: ServiceRuntime, gateways: Gateways, settings: Settings) -> Callable[[], Awaitable[None]]:
    reconciling = Reconciling(settings.reconcile_after_seconds, settings.reconcile_max_interval_seconds, settings.processing_check_seconds)

    async def run() -> None:
        measured = 0.0
        while True:
            if time.monotonic() - measured >= GAUGE_INTERVAL_SECONDS:
                await measure_open_attempts(runtime)
                measured = time.monotonic()
            worked = await call_next_attempt(runtime, gateways, reconciling)
            worked = await call_next_refund(runtime, gateways, settings.reconcile_after_seconds) or worked
            if not worked:
                await asyncio.sleep(settings.collector_interval_seconds)

    return run
