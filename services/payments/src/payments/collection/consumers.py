"""Events in: each handler turns one event into one call of the collection service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.service import ServiceRuntime
from payments.collection import service
from payments.refund import service as refunds

Handler = Callable[[AsyncSession, CloudEvent[Any]], Awaitable[None]]


def handlers(runtime: ServiceRuntime) -> dict[str, Handler]:
    async def invoice_issued(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.on_invoice_issued(runtime, session, event)

    async def credit_note_issued(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await refunds.on_credit_note_issued(runtime, session, event)

    async def retry_requested(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.on_retry_requested(runtime, session, event)

    return {"invoice_issued": invoice_issued, "credit_note_issued": credit_note_issued, "retry_requested": retry_requested}
