"""Events in: customers announced by usage-ingest; their direct-debit mandates, from payments."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted, MandateChanged
from billing_runtime.service import ServiceRuntime
from invoicing.buyer import repository, service


async def on_customer_upserted(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: CustomerUpserted = event.data
    await service.record_customer(runtime, session, data)


async def on_mandate_changed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: MandateChanged = event.data
    row = {"account_id": data.account_id, "seller_id": data.seller_id, "mandate_id": data.mandate_id, "provider": data.provider, "status": data.status}
    await repository.put_mandate(session, row)
