"""API models of an evaluation."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from dunning.policy.schemas import Action


class ReachedOut(BaseModel):
    case_id: str
    invoice_id: str
    account_id: str
    step: int
    days_after_due: int
    action: Action


class EvaluationOut(BaseModel):
    evaluated_on: date
    reached: list[ReachedOut]
