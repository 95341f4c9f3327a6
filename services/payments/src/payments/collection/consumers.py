"""Events in: each handler turns one event (or a batch of issued invoices) into one call of the collection service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.inbox import BatchHandler, RejectedEvents
from billing_runtime.service import ServiceRuntime
from payments.collection import service
from payments.invoice.service import invoice_row
from payments.refund import service as refunds

Handler = Callable[[AsyncSession, CloudEvent[Any]], Awaitable[None]]


def handlers(runtime: ServiceRuntime) -> dict[str, Handler]:
    async def credit_note_issued(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await refunds.on_credit_note_issued(runtime, session, event)

    async def retry_requested(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.on_retry_requested(runtime, session, event)

    return {"credit_note_issued": credit_note_issued, "retry_requested": retry_requested}


def batch_handlers(runtime: ServiceRuntime) -> dict[str, BatchHandler]:
    """The events applied a polled run at a time (`runtime.on_batch`), set-based."""

    async def invoices_issued(session: AsyncSession, events: list[CloudEvent[Any]]) -> None:
        refused: dict[str, BaseException] = {}
        for event in events:
            try:
                invoice_row(event)
            except ValueError as exc:
                refused[event.id] = exc
        if refused:
            raise RejectedEvents(refused)  # dead-lettered alone; the rest of the run is applied again without them
        await service.on_invoices_issued(runtime, session, events)

    return {"invoice_issued": invoices_issued}
