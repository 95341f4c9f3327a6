"""Composition root of dunning."""

from __future__ import annotations

from fastapi import FastAPI

from billing_events import CreditNoteIssued, CustomerUpserted, InvoiceIssued, InvoiceSettled, PaymentFailed, PaymentSucceeded
from billing_runtime.service import ServiceRuntime, create_app
from dunning.account import models as account_models  # noqa: F401  (registers the tables)
from dunning.case import consumers
from dunning.case import models as case_models  # noqa: F401
from dunning.case.endpoints import router as case_router
from dunning.config import Settings
from dunning.db import metadata
from dunning.policy import models as policy_models  # noqa: F401
from dunning.policy.endpoints import router as policy_router
from dunning.step import models as step_models  # noqa: F401
from dunning.step.endpoints import router as step_router
from dunning.step.service import DailyEvaluation

SERVICE = "dunning"


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    handlers = consumers.handlers(runtime)
    for model in (PaymentSucceeded, InvoiceSettled, CreditNoteIssued, PaymentFailed):
        runtime.on(model, handlers[model.__name__])
    batches = consumers.batch_handlers(runtime)
    for batch_model in (InvoiceIssued, CustomerUpserted):
        runtime.on_batch(batch_model, batches[batch_model.__name__])
    if settings.evaluate_in_background:
        runtime.run_in_background("evaluation", DailyEvaluation(runtime, settings.evaluate_interval_seconds).run)
    return create_app(
        runtime,
        [case_router, policy_router, step_router],
        title="dunning",
        description="Credit control: cases per overdue invoice, per-seller dunning policies, suspension and reinstatement.",
    )


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory dunning.main:app`."""
    return build()
