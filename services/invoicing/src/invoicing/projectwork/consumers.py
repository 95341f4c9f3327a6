"""Events in: time and materials entered (rating's ProjectWorkRecorded) make their statement. (One
naming another seller than its envelope's tenant never gets here: the runtime refuses it.)"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, ProjectWorkRecorded
from billing_runtime.service import Handlers, ServiceRuntime
from invoicing.config import Settings
from invoicing.projectwork import service


async def on_project_work_recorded(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[ProjectWorkRecorded]) -> None:
    await service.issue_statement(runtime, session, event.data)


HANDLERS: Handlers = {ProjectWorkRecorded: on_project_work_recorded}
