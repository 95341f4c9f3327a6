"""Events in: CustomerUpserted keeps the contact projection current."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted
from billing_runtime.inbox import Handler
from billing_runtime.service import ServiceRuntime
from notify.contact import service


def on_customer_upserted(runtime: ServiceRuntime) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent[Any]) -> None:
        data: CustomerUpserted = event.data
        await service.apply_customer(session, data, runtime.clock.now())

    return handle
