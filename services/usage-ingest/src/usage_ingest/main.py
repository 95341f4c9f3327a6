"""Composition root of usage-ingest."""

from __future__ import annotations

from fastapi import FastAPI

from billing_runtime.service import ServiceRuntime, create_app
from usage_ingest import catalogue, ingest  # noqa: F401  (registers the tables)
from usage_ingest.catalogue.consumers import HANDLERS
from usage_ingest.config import Settings
from usage_ingest.db import metadata
from usage_ingest.ingest.endpoints import router

SERVICE = "usage-ingest"


def build(settings: Settings | None = None) -> FastAPI:
    runtime = ServiceRuntime(SERVICE, settings or Settings(), metadata)
    runtime.consume(HANDLERS)
    return create_app(runtime, [router], title="usage-ingest", description="Partners post customers, orders, usage and quantity counts.")


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory usage_ingest.main:app`."""
    return build()
