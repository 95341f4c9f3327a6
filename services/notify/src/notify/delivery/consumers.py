"""Events in: each event a person should hear about queues an email (sending happens later)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.inbox import BatchHandler, Handler
from billing_runtime.service import ServiceRuntime
from notify.config import Settings
from notify.delivery import service
from notify.webhook import repository as webhook_repo
from notify.webhook import service as webhooks

Decide = Callable[..., Awaitable[Any]]


def _bind(runtime: ServiceRuntime, settings: Settings, decide: Decide) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent[Any]) -> None:
        now: datetime = runtime.clock.now()
        await decide(session, event, now=now, default_sender_email=settings.sender_email)

    return handle


def on_invoice_issued(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_invoice_issued)


def on_invoices_issued(runtime: ServiceRuntime, settings: Settings) -> BatchHandler:
    """InvoiceIssued a batch at a time (a month close issues thousands at once): the emails in
    three statements (notify.delivery.service.record_invoices_issued), then the webhooks of the
    tenants that subscribed to it (one look per tenant, the fan-out only where there are endpoints)."""

    async def handle(session: AsyncSession, events: list[CloudEvent[Any]]) -> None:
        now: datetime = runtime.clock.now()
        await service.record_invoices_issued(session, events, now=now, default_sender_email=settings.sender_email)
        subscribed: dict[str, bool] = {}
        for event in events:
            if event.tenant not in subscribed:
                subscribed[event.tenant] = bool(await webhook_repo.subscribed(session, event.tenant, event.type))
            if subscribed[event.tenant]:
                await webhooks.fan_out(session, event, now)

    return handle


def on_payment_succeeded(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_payment_succeeded)


def on_payment_failed(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_payment_failed)


def on_dunning_step_reached(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_dunning_step)


def on_account_suspended(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_account_suspended)


def on_account_reinstated(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_account_reinstated)


def on_comparison_report_ready(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_comparison_report)


def on_project_work_statement(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_project_work_statement)


def on_portal_sign_in_link(runtime: ServiceRuntime, settings: Settings) -> Handler:
    return _bind(runtime, settings, service.record_portal_sign_in)
