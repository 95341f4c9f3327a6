"""Composition root of rating."""

from __future__ import annotations

from fastapi import FastAPI

from billing_runtime.service import ServiceRuntime, create_app
from rating import billrun, catalogue, discount, subscription  # noqa: F401  (registers the tables)
from rating.billrun.endpoints import router as billrun_router
from rating.billrun.scheduler import scheduled_runs
from rating.catalogue.endpoints import router as catalogue_router
from rating.config import Settings
from rating.db import metadata
from rating.discount.endpoints import router as discount_router
from rating.subscription.consumers import BATCH_HANDLERS, HANDLERS
from rating.subscription.endpoints import accounts as account_subscription_router
from rating.subscription.endpoints import router as subscription_router

SERVICE = "rating"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    runtime.consume(HANDLERS, batch=BATCH_HANDLERS)
    if settings.scheduler_enabled:
        runtime.every("bill-run-scheduler", settings.scheduler_interval_seconds, scheduled_runs(runtime, settings.distributor_id))
    return create_app(
        runtime,
        [catalogue_router, billrun_router, subscription_router, account_subscription_router, discount_router],
        title="rating",
        description="Catalogue, price lists and billing policies; subscriptions and usage as rated; bill runs that close a period in two tiers.",
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory rating.main:app`."""
    return build()
