"""Events in: invoicing's SellerPaymentAccountChanged keeps the bank account the mails show."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, SellerPaymentAccountChanged
from billing_runtime.service import Handlers, ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from notify.brand import service

PAYMENT_ACCOUNTS = Counter("billing_notify_payment_accounts_total", "Sellers' bank accounts announced by invoicing, by outcome", ["outcome"])
start_at_zero(PAYMENT_ACCOUNTS, ("applied", "stale"))


async def on_payment_account_changed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[SellerPaymentAccountChanged]) -> None:
    """The bank account the how-to-pay part of the mails shows (invoicing's seller profile owns it)."""
    applied = await service.record_payment_account(session, event.tenant, event.data)
    PAYMENT_ACCOUNTS.labels("applied" if applied else "stale").inc()


HANDLERS: Handlers = {SellerPaymentAccountChanged: on_payment_account_changed}
