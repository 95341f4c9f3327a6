"""Events in: time and materials entered (rating's ProjectWorkRecorded) make their statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, ProjectWorkRecorded
from billing_runtime.service import ServiceRuntime
from invoicing.config import Settings
from invoicing.projectwork import service


class ForeignSeller(ValueError):
    """A ProjectWorkRecorded whose seller is not its envelope's tenant: not applied (dead-lettered)."""


async def on_project_work_recorded(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[Any]) -> None:
    data: ProjectWorkRecorded = event.data
    if data.seller_id != event.tenant:
        raise ForeignSeller(f"event {event.id} is for tenant {event.tenant!r} but names seller {data.seller_id!r}")
    await service.issue_statement(runtime, session, data)
