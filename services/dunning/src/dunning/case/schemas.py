"""API models of cases and standing."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from billing_events import DecimalStr
from billing_runtime.api import Page
from dunning.policy.schemas import Action


class CaseOut(BaseModel):
    case_id: str
    invoice_id: str
    invoice_number: str
    account_id: str
    currency: str
    total: DecimalStr
    amount_paid: DecimalStr
    amount_open: DecimalStr
    issued_on: date
    due_on: date
    status: Literal["open", "closed"]
    days_overdue: int
    closed_on: date | None
    close_reason: Literal["paid", "credited", "written_off"] | None
    step: int | None = Field(description="The latest dunning step reached (numbered as in the seller's policy), null before the first.")
    step_action: Action | None
    step_reached_on: date | None


class AmountOut(BaseModel):
    amount: DecimalStr
    currency: str


class PaymentFailureOut(BaseModel):
    payment_id: str
    failed_on: date
    reason_code: str
    reason: str


class StandingOut(BaseModel):
    account_id: str
    open_cases: int
    overdue_cases: int
    amount_open: list[AmountOut]
    amount_overdue: list[AmountOut]
    suspended: bool
    step: int | None = Field(description="The step of the current case.")
    step_action: Action | None
    current_case: CaseOut | None = Field(description="The open case furthest along the policy (then the earliest due).")
    suspended_on: date | None
    suspended_by_case: str | None
    cascaded_from: str | None = Field(description="The partner account whose suspension by the distributor suspended this one.")
    last_payment_failure: PaymentFailureOut | None


class CasePage(Page[CaseOut]):
    """One page of the seller's dunning cases, the earliest due first."""
