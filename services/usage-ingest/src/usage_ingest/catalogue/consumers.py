"""Events in: rating's catalogue and closed periods, applied one at a time in the inbox's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import BillRunClosed, CloudEvent, EventData, ProductPublished
from billing_runtime.inbox import Handler
from usage_ingest.catalogue import service


class ForeignTenant(ValueError):
    """A product (or a bill run) whose seller is not its envelope's tenant: not applied (dead-lettered)."""


async def on_product_published(session: AsyncSession, event: CloudEvent[Any]) -> None:
    if event.data.seller_id != event.tenant:
        raise ForeignTenant(f"event {event.id} is for tenant {event.tenant!r} but names seller {event.data.seller_id!r}")
    await service.record_product(session, event.data)


async def on_bill_run_closed(session: AsyncSession, event: CloudEvent[Any]) -> None:
    if event.data.seller_id != event.tenant:
        raise ForeignTenant(f"event {event.id} is for tenant {event.tenant!r} but names seller {event.data.seller_id!r}")
    await service.record_closed_run(session, event.data)


HANDLERS: dict[type[EventData], Handler] = {ProductPublished: on_product_published, BillRunClosed: on_bill_run_closed}
