"""HTTP: evaluate the seller's open cases now (the daily loop does the same for every seller)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from billing_runtime.api import Runtime, Tenant, Write
from dunning.step import service
from dunning.step.schemas import EvaluationOut, ReachedOut

router = APIRouter(prefix="/v1", tags=["evaluation"])


@router.post("/dunning/evaluate", dependencies=[Write], response_model=EvaluationOut)
async def evaluate(tenant: Tenant, runtime: Runtime) -> EvaluationOut:
    today = runtime.clock.today()
    reached = await service.evaluate_due(runtime, today, tenant=tenant, trigger="api")
    return EvaluationOut(evaluated_on=today, reached=[ReachedOut(**asdict(r)) for r in reached])
