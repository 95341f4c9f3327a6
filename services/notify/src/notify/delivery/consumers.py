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


async def _email(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[Any], decide: Decide) -> None:
    """Queue the email `decide` makes of the event; then its webhooks, if partners may subscribe to its type."""
    now: datetime = runtime.clock.now()
    await decide(session, event, now=now, default_sender_email=settings_of(runtime).sender_email)
    if event.type in webhooks.WEBHOOK_EVENT_TYPES:
        await webhooks.fan_out(session, event, now)


async def on_payment_succeeded(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentSucceeded]) -> None:
    await _email(runtime, session, event, service.record_payment_succeeded)


async def on_payment_failed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentFailed]) -> None:
    await _email(runtime, session, event, service.record_payment_failed)


async def on_dunning_step_reached(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[DunningStepReached]) -> None:
    await _email(runtime, session, event, service.record_dunning_step)


async def on_account_suspended(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[AccountSuspended]) -> None:
    await _email(runtime, session, event, service.record_account_suspended)


async def on_account_reinstated(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[AccountReinstated]) -> None:
    await _email(runtime, session, event, service.record_account_reinstated)


async def on_comparison_report_ready(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[ComparisonReportReady]) -> None:
    await _email(runtime, session, event, service.record_comparison_report)


async def on_project_work_statement(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[ProjectWorkStatementIssued]) -> None:
    await _email(runtime, session, event, service.record_project_work_statement)


async def on_portal_sign_in_link(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PortalSignInLinkIssued]) -> None:
    await _email(runtime, session, event, service.record_portal_sign_in)


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


HANDLERS: Handlers = {
    PaymentSucceeded: on_payment_succeeded,
    PaymentFailed: on_payment_failed,
    DunningStepReached: on_dunning_step_reached,
    AccountSuspended: on_account_suspended,
    AccountReinstated: on_account_reinstated,
    ComparisonReportReady: on_comparison_report_ready,
    ProjectWorkStatementIssued: on_project_work_statement,
    PortalSignInLinkIssued: on_portal_sign_in_link,
}

# A month close's invoices: emails and webhooks decided a batch at a time.
BATCH_HANDLERS: BatchHandlers = {InvoiceIssued: on_invoices_issued}
