"""Events in: customers announced by usage-ingest."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted
from billing_runtime.service import ServiceRuntime
from invoicing.buyer import service


async def on_customer_upserted(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: CustomerUpserted = event.data
    await service.record_customer(runtime, session, data)
