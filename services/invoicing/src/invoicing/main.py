"""Composition root of invoicing."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from billing_events import (
    ChargesRated,
    CollectingMethodChanged,
    CustomerUpserted,
    MandateChanged,
    PaymentRefunded,
    PaymentSucceeded,
    PeriodClosed,
    ProjectWorkRecorded,
)
from billing_runtime.service import ServiceRuntime, create_app
from invoicing import models  # noqa: F401  (registers the tables)
from invoicing.buyer.consumers import on_collecting_method_changed, on_customer_upserted, on_mandate_changed
from invoicing.comparison.consumers import on_charges_rated
from invoicing.comparison.endpoints import router as comparison_router
from invoicing.config import Settings
from invoicing.creditnote.endpoints import router as credit_note_router
from invoicing.db import metadata
from invoicing.documents import service as documents
from invoicing.documents.ahead import RenderAhead
from invoicing.documents.endpoints import router as documents_router
from invoicing.invoice.consumers import on_payment_refunded, on_payment_succeeded, on_period_closed_batch
from invoicing.invoice.endpoints import router as invoice_router
from invoicing.projectwork.consumers import on_project_work_recorded
from invoicing.projectwork.endpoints import router as project_work_router
from invoicing.seller.endpoints import router as seller_router
from invoicing.tax.endpoints import router as tax_router

SERVICE = "invoicing"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    runtime.on(ProjectWorkRecorded, partial(on_project_work_recorded, runtime))  # seed 001's statements
    runtime.on(CustomerUpserted, partial(on_customer_upserted, runtime))
    runtime.on(ChargesRated, partial(on_charges_rated, runtime))  # seed 001's comparison report, ahead of the invoice
    runtime.on_batch(PeriodClosed, partial(on_period_closed_batch, runtime))
    runtime.on(PaymentSucceeded, partial(on_payment_succeeded, runtime))
    runtime.on(PaymentRefunded, partial(on_payment_refunded, runtime))
    runtime.on(MandateChanged, partial(on_mandate_changed, runtime))
    runtime.on(CollectingMethodChanged, partial(on_collecting_method_changed, runtime))
    runtime.run_in_background("render-pool", documents.keep_pool)
    if settings.render_ahead:
        ahead = RenderAhead(runtime, batch=settings.render_ahead_batch, poll_seconds=settings.render_ahead_poll_ms / 1000)
        runtime.run_in_background("render-ahead", ahead.run)
    return create_app(
        runtime,
        [seller_router, invoice_router, credit_note_router, documents_router, comparison_router, tax_router, project_work_router],
        title="invoicing",
        description="Invoices issued from closed billing periods: tax, numbering, totals, due dates, settlement, credit notes, documents.",
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory invoicing.main:app`."""
    return build()
