"""Events in: invoicing's SellerPaymentAccountChanged keeps the bank account the mails show."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.inbox import Handler
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from notify.brand import service

PAYMENT_ACCOUNTS = Counter("billing_notify_payment_accounts_total", "Sellers' bank accounts announced by invoicing, by outcome", ["outcome"])
start_at_zero(PAYMENT_ACCOUNTS, ("applied", "stale"))


def on_payment_account_changed(runtime: ServiceRuntime) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent[Any]) -> None:
        applied = await service.record_payment_account(session, event.tenant, event.data)
        PAYMENT_ACCOUNTS.labels("applied" if applied else "stale").inc()

    return handle
