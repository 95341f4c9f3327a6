"""Composition root of invoicing."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from billing_runtime.service import ServiceRuntime, create_app
from invoicing import models  # noqa: F401  (registers the tables)
from invoicing.buyer import consumers as buyer_consumers
from invoicing.comparison import consumers as comparison_consumers
from invoicing.comparison.endpoints import router as comparison_router
from invoicing.config import Settings
from invoicing.creditnote.endpoints import router as credit_note_router
from invoicing.db import metadata
from invoicing.documents import service as documents
from invoicing.documents.ahead import RenderAhead
from invoicing.documents.endpoints import router as documents_router
from invoicing.invoice import consumers as invoice_consumers
from invoicing.invoice.endpoints import router as invoice_router
from invoicing.projectwork import consumers as project_work_consumers
from invoicing.projectwork.endpoints import router as project_work_router
from invoicing.seller.endpoints import router as seller_router
from invoicing.tax.endpoints import router as tax_router

SERVICE = "invoicing"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    runtime.consume(
        invoice_consumers.HANDLERS,
        buyer_consumers.HANDLERS,
        project_work_consumers.HANDLERS,  # seed 001's statements
        comparison_consumers.HANDLERS,  # seed 001's comparison report, ahead of the invoice
        batch=invoice_consumers.BATCH_HANDLERS,
    )
    runtime.run_in_background("render-pool", partial(documents.keep_pool, settings))
    if settings.render_ahead:
        ahead = RenderAhead(runtime, batch=settings.render_ahead_batch, workers=settings.render_ahead_workers)
        runtime.every("render-ahead", settings.render_ahead_poll_ms / 1000, ahead.once)
    return create_app(
        runtime,
        [seller_router, invoice_router, credit_note_router, documents_router, comparison_router, tax_router, project_work_router],
        title="invoicing",
        description="Invoices issued from closed billing periods: tax, numbering, totals, due dates, settlement, credit notes, documents.",
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory invoicing.main:app`."""
    return build()
