"""Events in: usage-ingest's customers, orders, usage and counts, each applied by one service call
in the inbox's transaction. Customers, orders and usage, the bulk of the traffic, are applied a
run at a time (`BATCH_HANDLERS`). An event naming another partner than its envelope never gets
here: the runtime refuses it (`foreign_tenant`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    CustomerUpserted,
    ProjectWorkRecorded,
    QuantityObserved,
    SubscriptionCancelled,
    SubscriptionChanged,
    SubscriptionOrdered,
    UsageRecorded,
    derived_event_id,
)
from billing_runtime.errors import Unprocessable
from billing_runtime.inbox import RejectedEvents
from billing_runtime.service import BatchHandlers, Handlers, ServiceRuntime
from rating.subscription import project_work, service


class NegativeQuantity(Unprocessable):
    """Usage below zero for a product whose policy does not allow credits: not applied (dead-lettered)."""

    code = "negative_quantity"


def _distributor(runtime: ServiceRuntime) -> str | None:
    return getattr(runtime.settings, "distributor_id", None)


def _project_work_event(runtime: ServiceRuntime, data: ProjectWorkRecorded) -> CloudEvent[Any]:
    # One announcement per (seller, buyer, entry): a replayed usage record announces nothing new.
    event_id = derived_event_id("project_work_recorded", data.seller_id, data.buyer_account_id, data.entry_id)
    return runtime.event(data, tenant=data.seller_id, event_id=event_id, subject=data.entry_id)


async def on_subscription_changed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[SubscriptionChanged]) -> None:
    await service.record_change(session, event.data)


async def on_subscription_cancelled(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[SubscriptionCancelled]) -> None:
    await service.record_cancellation(session, event.data)


async def on_quantity_observed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[QuantityObserved]) -> None:
    await service.record_observation(session, event.data)


async def on_customers_upserted(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[CustomerUpserted]]) -> None:
    await service.record_customers(session, [event.data for event in events])


async def on_subscriptions_ordered(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[SubscriptionOrdered]]) -> None:
    await service.record_orders(session, [event.data for event in events])


async def on_usage_recorded(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[UsageRecorded]]) -> None:
    """A run of usage in one statement; usage a product's policy refuses (negative, no credits)
    dead-lettered alone; the run's project-work entries announced (`ProjectWorkRecorded`, through
    the outbox, in the same transaction) for their statements."""
    distributor_id = _distributor(runtime)
    negative = await service.refused_usage(session, [e.data for e in events], distributor_id)
    refused: dict[str, BaseException] = {e.id: NegativeQuantity(negative[e.data.record_id]) for e in events if e.data.record_id in negative}
    if refused:
        raise RejectedEvents(refused)  # dead-lettered alone; the rest of the run is applied again without them
    await service.record_usage(session, [e.data for e in events])
    announced = await project_work.announce(session, [e.data for e in events], distributor_id)
    if announced:
        await runtime.outbox.add(session, *[_project_work_event(runtime, a) for a in announced])


HANDLERS: Handlers = {
    SubscriptionChanged: on_subscription_changed,
    SubscriptionCancelled: on_subscription_cancelled,
    QuantityObserved: on_quantity_observed,
}

BATCH_HANDLERS: BatchHandlers = {
    CustomerUpserted: on_customers_upserted,
    SubscriptionOrdered: on_subscriptions_ordered,
    UsageRecorded: on_usage_recorded,
}
