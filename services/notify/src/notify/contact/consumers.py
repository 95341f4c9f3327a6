"""Events in: CustomerUpserted keeps the contact projection current (and goes to the partner's
webhooks, a billing profile its end customer changed in the portal)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted
from billing_runtime.service import Handlers, ServiceRuntime
from notify.contact import service
from notify.webhook.consumers import fan_out


async def on_customer_upserted(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[CustomerUpserted]) -> None:
    await service.apply_customer(session, event.data, runtime.clock.now())
    await fan_out(runtime, session, event)


HANDLERS: Handlers = {CustomerUpserted: on_customer_upserted}
