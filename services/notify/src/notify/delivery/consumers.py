"""Events in: each event a person should hear about queues an email (sending happens later); the
types partners may subscribe to are also queued for their webhooks (notify.webhook), in the same
transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    AccountReinstated,
    AccountSuspended,
    CloudEvent,
    ComparisonReportReady,
    DunningStepReached,
    EventData,
    InvoiceIssued,
    PaymentFailed,
    PaymentSucceeded,
    PortalSignInLinkIssued,
    ProjectWorkStatementIssued,
)
from billing_runtime.service import BatchHandlers, Handlers, ServiceRuntime
from notify.config import settings_of
from notify.delivery import service
from notify.webhook import repository as webhook_repo
from notify.webhook import service as webhooks

Decide = Callable[..., Awaitable[Any]]

# The email each event type makes (notify.delivery.service); InvoiceIssued's is BATCH_HANDLERS'.
EMAILS: dict[type[EventData], Decide] = {
    PaymentSucceeded: service.record_payment_succeeded,
    PaymentFailed: service.record_payment_failed,
    DunningStepReached: service.record_dunning_step,
    AccountSuspended: service.record_account_suspended,
    AccountReinstated: service.record_account_reinstated,
    ComparisonReportReady: service.record_comparison_report,
    ProjectWorkStatementIssued: service.record_project_work_statement,
    PortalSignInLinkIssued: service.record_portal_sign_in,
}


async def on_emailed_event(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[EventData]) -> None:
    """Queue the email the event's type makes (`EMAILS`); then its webhooks, if partners may
    subscribe to its type."""
    now: datetime = runtime.clock.now()
    await EMAILS[type(event.data)](session, event, now=now, default_sender_email=settings_of(runtime).sender_email)
    if event.type in webhooks.WEBHOOK_EVENT_TYPES:
        await webhooks.fan_out(session, event, now)


async def on_invoices_issued(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[InvoiceIssued]]) -> None:
    """InvoiceIssued a batch at a time (a month close issues thousands at once): the emails in
    three statements (notify.delivery.service.record_invoices_issued), then the webhooks of the
    tenants that subscribed to it (one look per tenant, the fan-out only where there are endpoints)."""
    now: datetime = runtime.clock.now()
    await service.record_invoices_issued(session, events, now=now, default_sender_email=settings_of(runtime).sender_email)
    subscribed: dict[str, bool] = {}
    for event in events:
        if event.tenant not in subscribed:
            subscribed[event.tenant] = bool(await webhook_repo.subscribed(session, event.tenant, event.type))
        if subscribed[event.tenant]:
            await webhooks.fan_out(session, event, now)


HANDLERS: Handlers = {model: on_emailed_event for model in EMAILS}

# A month close's invoices: emails and webhooks decided a batch at a time.
BATCH_HANDLERS: BatchHandlers = {InvoiceIssued: on_invoices_issued}
