"""Events in: rating's catalogue and closed periods, applied one at a time in the inbox's
transaction. (A product or bill run naming another seller than its envelope's tenant never gets
here: the runtime refuses it.)"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import BillRunClosed, CloudEvent, ProductPublished
from billing_runtime.service import Handlers, ServiceRuntime
from usage_ingest.catalogue import service


async def on_product_published(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[ProductPublished]) -> None:
    await service.record_product(session, event.data)


async def on_bill_run_closed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[BillRunClosed]) -> None:
    await service.record_closed_run(session, event.data)


HANDLERS: Handlers = {ProductPublished: on_product_published, BillRunClosed: on_bill_run_closed}
