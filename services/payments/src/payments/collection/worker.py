"""The periodic work of payments (`runtime.every`): send waiting attempts and refunds, reconcile
the unknown and undecided ones, and keep the gauges of open attempts current."""

from __future__ import annotations

from billing_runtime.service import ServiceRuntime
from payments.collection.service import Reconciling, call_next_attempt, measure_open_attempts
from payments.config import Settings
from payments.providers.gateways import Gateways
from payments.refund.service import call_next_refund

GAUGE_INTERVAL_SECONDS = 5.0


def collect(runtime: ServiceRuntime, gateways: Gateways, settings: Settings) -> None:
    """Register the collector (each `PAYMENTS_COLLECTOR_INTERVAL_SECONDS` when idle, at once again
    while it finds work) and the open-attempt gauges (every 5 s) with the runtime."""
    reconciling = Reconciling(settings.reconcile_after_seconds, settings.reconcile_max_interval_seconds, settings.processing_check_seconds)

    async def one_round() -> bool:
        worked = await call_next_attempt(runtime, gateways, reconciling)
        return await call_next_refund(runtime, gateways, settings.reconcile_after_seconds) or worked

    async def measure() -> None:
        await measure_open_attempts(runtime)

    runtime.every("open-attempts-gauge", GAUGE_INTERVAL_SECONDS, measure)
    runtime.every("collector", settings.collector_interval_seconds, one_round)
