"""Events in: closed periods become invoices; payments settle them. Same shape as the endpoints:
unpack the event, call one service function in the transaction the inbox gives."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, PaymentRefunded, PaymentSucceeded, PeriodClosed
from billing_runtime.inbox import RejectedEvents
from billing_runtime.service import BatchHandlers, Handlers, ServiceRuntime
from invoicing.config import Settings
from invoicing.invoice import service


async def on_periods_closed(runtime: ServiceRuntime[Settings], session: AsyncSession, events: list[CloudEvent[PeriodClosed]]) -> None:
    """Issue the invoices of a run of PeriodClosed events in one transaction. Periods that cannot
    be invoiced raise PeriodClosedRejected before anything is written, naming the first by
    `event_id` and every one in `errors` (event id → error)."""
    periods: list[PeriodClosed] = [event.data for event in events]
    try:
        await service.issue_invoices(runtime, session, periods)
    except service.PeriodClosedRejected as exc:
        exc.event_id = events[exc.index].id
        exc.errors = {events[i].id: error for i, error in exc.rejected.items()}
        raise


async def on_period_closed_batch(runtime: ServiceRuntime[Settings], session: AsyncSession, events: list[CloudEvent[PeriodClosed]]) -> None:
    """The batch handler of PeriodClosed: the periods that cannot be invoiced go to the runtime as
    RejectedEvents, each with its own PeriodClosedRejected (its stable `code`), to be dead-lettered
    alone while the rest of the run is issued."""
    try:
        await on_periods_closed(runtime, session, events)
    except service.PeriodClosedRejected as exc:
        by_id = {event.id: (i, event.data) for i, event in enumerate(events)}
        raise RejectedEvents(
            {event_id: service.PeriodClosedRejected(by_id[event_id][0], by_id[event_id][1], cause) for event_id, cause in exc.errors.items()}
        ) from exc


async def on_payment_succeeded(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[PaymentSucceeded]) -> None:
    await service.apply_payment(runtime, session, event.data)


async def on_payment_refunded(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[PaymentRefunded]) -> None:
    await service.apply_refund(runtime, session, event.data)


HANDLERS: Handlers = {PaymentSucceeded: on_payment_succeeded, PaymentRefunded: on_payment_refunded}

BATCH_HANDLERS: BatchHandlers = {PeriodClosed: on_period_closed_batch}
