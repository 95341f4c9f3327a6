"""Composition root of notify."""

from __future__ import annotations

from fastapi import FastAPI

from billing_runtime.service import ServiceRuntime, create_app
from notify import brand, contact, delivery, webhook  # noqa: F401  (registers the tables)
from notify.brand import consumers as brand_consumers
from notify.brand.endpoints import router as brand_router
from notify.config import Settings
from notify.contact import consumers as contact_consumers
from notify.db import metadata
from notify.delivery import consumers as delivery_consumers
from notify.delivery.endpoints import router as delivery_router
from notify.delivery.sender import EmailSender
from notify.webhook import consumers as webhook_consumers
from notify.webhook.endpoints import router as webhook_router
from notify.webhook.sender import WebhookSender

SERVICE = "notify"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    runtime.seal_secrets()  # webhook signing secrets are sealed at rest: no key, no start
    runtime.consume(
        delivery_consumers.HANDLERS, contact_consumers.HANDLERS, webhook_consumers.HANDLERS, brand_consumers.HANDLERS, batch=delivery_consumers.BATCH_HANDLERS
    )
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
