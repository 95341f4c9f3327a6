"""The loop that calls the providers for waiting attempts and refunds, and reconciles unknown ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from billing_runtime.service import ServiceRuntime
from payments.collection.service import call_next_attempt
from payments.config import Settings
from payments.providers.gateways import Gateways
from payments.refund.service import call_next_refund


def collector(runtime: ServiceRuntime, gateways: Gateways, settings: Settings) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        while True:
            worked = await call_next_attempt(runtime, gateways, settings.reconcile_after_seconds)
            worked = await call_next_refund(runtime, gateways, settings.reconcile_after_seconds) or worked
            if not worked:
                await asyncio.sleep(settings.collector_interval_seconds)

    return run
