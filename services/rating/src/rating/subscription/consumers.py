"""Events in: usage-ingest's customers, orders, usage and counts, each applied by one service call
in the inbox's transaction. Customers, orders and usage, the bulk of the traffic, are applied a
run at a time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    CustomerUpserted,
    EventData,
    ProjectWorkRecorded,
    QuantityObserved,
    SubscriptionCancelled,
    SubscriptionChanged,
    SubscriptionOrdered,
    UsageRecorded,
    derived_event_id,
)
from billing_runtime.inbox import BatchHandler, Handler, RejectedEvents
from billing_runtime.service import ServiceRuntime
from rating.subscription import project_work, service


def _project_work_event(runtime: ServiceRuntime, data: ProjectWorkRecorded) -> CloudEvent[Any]:
    # One announcement per (seller, buyer, entry): a replayed usage record announces nothing new.
    event_id = derived_event_id("project_work_recorded", data.seller_id, data.buyer_account_id, data.entry_id)
    return runtime.event(data, tenant=data.seller_id, event_id=event_id, subject=data.entry_id)


class ForeignTenant(ValueError):
    """An event whose data names another partner than its envelope: not applied (dead-lettered)."""


class NegativeQuantity(ValueError):
    """Usage below zero for a product whose policy does not allow credits: not applied (dead-lettered)."""


def _handler(apply: Callable[[AsyncSession, Any], Awaitable[None]]) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent[Any]) -> None:
        partner = getattr(event.data, "partner_id", None)
        if partner != event.tenant:
            raise ForeignTenant(f"event {event.id} is for tenant {event.tenant!r} but names partner {partner!r}")
        await apply(session, event.data)

    return handle


def handlers(distributor_id: str | None) -> tuple[tuple[type[EventData], Handler], ...]:
    """The events applied one at a time (`runtime.on`)."""
    return (
        (SubscriptionChanged, _handler(service.record_change)),
        (SubscriptionCancelled, _handler(service.record_cancellation)),
        (QuantityObserved, _handler(service.record_observation)),
    )


def _foreign(events: list[CloudEvent[Any]]) -> dict[str, BaseException]:
    """The events whose data names another partner than their envelope's tenant."""
    return {
        event.id: ForeignTenant(f"event {event.id} is for tenant {event.tenant!r} but names partner {event.data.partner_id!r}")
        for event in events
        if event.data.partner_id != event.tenant
    }


def _batch(apply: Callable[[AsyncSession, list[Any]], Awaitable[None]]) -> BatchHandler:
    """A run of events applied in one call; those naming a foreign partner refused alone."""

    async def handle(session: AsyncSession, events: list[CloudEvent[Any]]) -> None:
        refused = _foreign(events)
        if refused:
            raise RejectedEvents(refused)
        await apply(session, [event.data for event in events])

    return handle


def batch_handlers(distributor_id: str | None, runtime: ServiceRuntime | None = None) -> tuple[tuple[type[EventData], BatchHandler], ...]:
    """The events applied a run at a time (`runtime.on_batch`), one statement per run: customers,
    orders and usage (the bulk of the traffic); the run's project-work entries announced
    (`ProjectWorkRecorded`, through `runtime`'s outbox, in the same transaction) for their statements."""

    async def record_usage(session: AsyncSession, events: list[CloudEvent[Any]]) -> None:
        refused = _foreign(events)
        candidates = [e for e in events if e.id not in refused]
        negative = await service.refused_usage(session, [e.data for e in candidates], distributor_id)
        for event in candidates:
            if event.data.record_id in negative:
                refused[event.id] = NegativeQuantity(negative[event.data.record_id])
        if refused:
            raise RejectedEvents(refused)  # dead-lettered alone; the rest of the run is applied again without them
        await service.record_usage(session, [e.data for e in events])
        if runtime is not None:
            announced = await project_work.announce(session, [e.data for e in events], distributor_id)
            if announced:
                await runtime.outbox.add(session, *[_project_work_event(runtime, a) for a in announced])

    return (
        (CustomerUpserted, _batch(service.record_customers)),
        (SubscriptionOrdered, _batch(service.record_orders)),
        (UsageRecorded, record_usage),
    )
