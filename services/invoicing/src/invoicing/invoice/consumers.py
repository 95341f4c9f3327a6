"""Events in: closed periods become invoices; payments settle them. Same shape as the endpoints:
unpack the event, call one service function in the transaction the inbox gives."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, PaymentRefunded, PaymentSucceeded, PeriodClosed
from billing_runtime.service import ServiceRuntime
from invoicing.invoice import service


async def on_period_closed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: PeriodClosed = event.data
    await service.issue_invoice(runtime, session, data)


async def on_payment_succeeded(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: PaymentSucceeded = event.data
    await service.apply_payment(runtime, session, data)


async def on_payment_refunded(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: PaymentRefunded = event.data
    await service.apply_refund(runtime, session, data)
