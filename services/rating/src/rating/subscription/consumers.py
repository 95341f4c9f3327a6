"""Events in: usage-ingest's customers, orders, usage and counts, each applied by one service call
in the inbox's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    CustomerUpserted,
    EventData,
    QuantityObserved,
    SubscriptionCancelled,
    SubscriptionChanged,
    SubscriptionOrdered,
    UsageRecorded,
)
from billing_runtime.inbox import Handler
from rating.subscription import service


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
    async def record_usage(session: AsyncSession, data: UsageRecorded) -> None:
        if data.quantity < 0 and not await service.allows_credits(session, data.partner_id, distributor_id, data.product_code):
            raise NegativeQuantity(f"usage {data.record_id!r} of {data.product_code!r} is negative and the product allows no credits")
        await service.record_usage(session, data)

    return (
        (CustomerUpserted, _handler(service.record_customer)),
        (SubscriptionOrdered, _handler(service.record_order)),
        (SubscriptionChanged, _handler(service.record_change)),
        (SubscriptionCancelled, _handler(service.record_cancellation)),
        (UsageRecorded, _handler(record_usage)),
        (QuantityObserved, _handler(service.record_observation)),
    )
