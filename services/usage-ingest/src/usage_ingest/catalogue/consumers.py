"""Events in: rating's catalogue, applied one at a time in the inbox's transaction. (A product
naming another seller than its envelope's tenant never gets here: the runtime refuses it.)"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, ProductPublished
from billing_runtime.service import Handlers, ServiceRuntime
from usage_ingest.catalogue import service


async def on_product_published(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[ProductPublished]) -> None:
    await service.record_product(session, event.data)


HANDLERS: Handlers = {ProductPublished: on_product_published}
