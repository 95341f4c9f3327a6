"""Composition root of notify."""

from __future__ import annotations

from fastapi import FastAPI

from billing_events import (
    AccountReinstated,
    AccountSuspended,
    ComparisonReportReady,
    CustomerUpserted,
    DunningStepReached,
    InvoiceIssued,
    PaymentFailed,
    PaymentSucceeded,
    PortalSignInLinkIssued,
    ProjectWorkStatementIssued,
    SellerPaymentAccountChanged,
)
from billing_runtime.inbox import Handler
from billing_runtime.service import ServiceRuntime, create_app
from notify import brand, contact, delivery, webhook  # noqa: F401  (registers the tables)
from notify.brand.consumers import on_payment_account_changed
from notify.brand.endpoints import router as brand_router
from notify.config import Settings
from notify.contact.consumers import on_customer_upserted
from notify.db import metadata
from notify.delivery import consumers
from notify.delivery.endpoints import router as delivery_router
from notify.delivery.sender import EmailSender
from notify.webhook.consumers import with_webhooks
from notify.webhook.endpoints import router as webhook_router
from notify.webhook.sender import WebhookSender
from notify.webhook.service import WEBHOOK_EVENTS

SERVICE = "notify"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    runtime.seal_secrets()  # webhook signing secrets are sealed at rest: no key, no start
    emails: dict[str, Handler] = {
        PaymentSucceeded.event_type: consumers.on_payment_succeeded(runtime, settings),
        PaymentFailed.event_type: consumers.on_payment_failed(runtime, settings),
        DunningStepReached.event_type: consumers.on_dunning_step_reached(runtime, settings),
        AccountSuspended.event_type: consumers.on_account_suspended(runtime, settings),
        AccountReinstated.event_type: consumers.on_account_reinstated(runtime, settings),
        ComparisonReportReady.event_type: consumers.on_comparison_report_ready(runtime, settings),
        CustomerUpserted.event_type: on_customer_upserted(runtime),  # the contact projection (and the partner's webhooks)
        ProjectWorkStatementIssued.event_type: consumers.on_project_work_statement(runtime, settings),
    }
    runtime.on(PortalSignInLinkIssued, consumers.on_portal_sign_in_link(runtime, settings))
    runtime.on(SellerPaymentAccountChanged, on_payment_account_changed(runtime))  # the bank account how-to-pay shows
    for model in WEBHOOK_EVENTS:
        if model is not InvoiceIssued:
            runtime.on(model, with_webhooks(runtime, emails.get(model.event_type)))
    # A month close's invoices: emails and webhooks decided a batch at a time.
    runtime.on_batch(InvoiceIssued, consumers.on_invoices_issued(runtime, settings))
    for model in (
        InvoiceIssued,
        PaymentSucceeded,
        PaymentFailed,
        DunningStepReached,
        AccountSuspended,
        AccountReinstated,
        ComparisonReportReady,
        ProjectWorkStatementIssued,
    ):
        if model not in WEBHOOK_EVENTS:
            runtime.on(model, emails[model.event_type])
    runtime.run_in_background("email-sender", EmailSender(runtime, settings).run)
    runtime.run_in_background("webhook-sender", WebhookSender(runtime, settings).run)
    return create_app(
        runtime,
        [brand_router, delivery_router, webhook_router],
        title="notify",
        description="Branded emails to billing contacts, signed webhooks to partner systems, and the log of what was sent.",
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory notify.main:app`."""
    return build()
