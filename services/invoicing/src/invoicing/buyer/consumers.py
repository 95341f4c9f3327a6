"""Events in: customers announced by usage-ingest; their direct-debit mandates, from payments."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted, MandateChanged
from billing_runtime.service import Handlers, ServiceRuntime
from invoicing.buyer import repository, service


async def on_customer_upserted(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[CustomerUpserted]) -> None:
    await service.record_customer(runtime, session, event.data)


async def on_mandate_changed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[MandateChanged]) -> None:
    data = event.data
    row = {"account_id": data.account_id, "seller_id": data.seller_id, "mandate_id": data.mandate_id, "provider": data.provider, "status": data.status}
    await repository.put_mandate(session, row)


HANDLERS: Handlers = {CustomerUpserted: on_customer_upserted, MandateChanged: on_mandate_changed}
