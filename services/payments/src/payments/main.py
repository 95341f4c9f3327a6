"""Composition root of payments."""

from __future__ import annotations

from fastapi import FastAPI

from billing_runtime.service import ServiceRuntime, create_app
from payments.banking import models as banking_models  # noqa: F401  (registers the tables)
from payments.banking.endpoints import router as banking_router
from payments.collection import consumers as collection_consumers
from payments.collection import models as collection_models  # noqa: F401  (registers the tables)
from payments.collection.endpoints import router as collection_router
from payments.collection.worker import collect
from payments.config import Settings
from payments.db import metadata
from payments.invoice import models as invoice_models  # noqa: F401  (registers the tables)
from payments.invoice.endpoints import router as invoice_router
from payments.methods import models as methods_models  # noqa: F401  (registers the tables)
from payments.methods.endpoints import router as methods_router
from payments.payment import models as payment_models  # noqa: F401  (registers the tables)
from payments.payment.endpoints import router as payment_router
from payments.providers import models as providers_models  # noqa: F401  (registers the tables)
from payments.providers.endpoints import router as providers_router
from payments.providers.gateways import Gateways, GoCardlessGateway, StripeGateway
from payments.refund import models as refund_models  # noqa: F401  (registers the tables)
from payments.refund.endpoints import router as refund_router
from payments.webhooks import models as webhooks_models  # noqa: F401  (registers the tables)
from payments.webhooks.endpoints import router as webhooks_router

SERVICE = "payments"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    runtime.seal_secrets()  # provider credentials are sealed at rest: no key, no start
    gateways = Gateways(
        stripe=StripeGateway(settings.stripe_api_base, settings.provider_timeout_seconds),
        gocardless=GoCardlessGateway(settings.gocardless_base_url, settings.gocardless_environment, settings.provider_timeout_seconds),
    )
    runtime.consume(collection_consumers.HANDLERS, batch=collection_consumers.BATCH_HANDLERS)
    collect(runtime, gateways, settings)
    app = create_app(
        runtime,
        [payment_router, invoice_router, providers_router, methods_router, collection_router, webhooks_router, banking_router, refund_router],
        title="payments",
        description="Collection by card (Stripe), direct debit (GoCardless) and bank transfer; provider webhooks; statement matching; refunds.",
    )
    app.state.gateways = gateways
    return app


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory payments.main:app`."""
    return build()
