"""Events in: every event a partner system may subscribe to is queued for the tenant's endpoints,
beside whatever email it also causes (one handler per event type, one transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.inbox import Handler
from billing_runtime.service import ServiceRuntime
from notify.webhook import service


def with_webhooks(runtime: ServiceRuntime, handler: Handler | None) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent[Any]) -> None:
        if handler is not None:
            await handler(session, event)
        await service.fan_out(session, event, runtime.clock.now())

    return handle
