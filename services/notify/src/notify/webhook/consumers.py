"""Events in: every event a partner system may subscribe to is queued for the tenant's endpoints
(`fan_out`). The types that also cause an email or feed the contact projection fan out in their own
handlers (delivery/consumers.py, contact/consumers.py), in the same transaction; the rest are
here."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    CollectingMethodChanged,
    CreditNoteIssued,
    DunningCaseClosed,
    DunningCaseOpened,
    InvoiceSettled,
    MandateChanged,
    PaymentRefunded,
    PaymentRetryRequested,
)
from billing_runtime.service import Handlers, ServiceRuntime
from notify.webhook import service


async def fan_out(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any]) -> None:
    """Queue the event for each of its tenant's endpoints subscribed to its type."""
    await service.fan_out(session, event, runtime.clock.now())


HANDLERS: Handlers = {
    model: fan_out
    for model in (
        CreditNoteIssued,
        InvoiceSettled,
        PaymentRefunded,
        MandateChanged,
        CollectingMethodChanged,
        DunningCaseOpened,
        PaymentRetryRequested,
        DunningCaseClosed,
    )
}
