"""API models of a dunning policy."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Action(StrEnum):
    """What a dunning step does when a case reaches it."""

    REMIND = "remind"
    RETRY = "retry"
    FINAL_NOTICE = "final_notice"
    SUSPEND = "suspend"


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days_after_due: int = Field(ge=1, le=365, description="Days after the due date (overdue from day 1).")
    action: Action


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[StepIn] = Field(min_length=1, max_length=20)
    cascade_to_customers: bool = Field(
        default=False,
        description="Only for the distributor: suspending a partner also suspends the service of the partner's customers.",
    )


class StepOut(BaseModel):
    step: int
    days_after_due: int
    action: Action


class PolicyOut(BaseModel):
    tenant: str
    steps: list[StepOut]
    cascade_to_customers: bool
    configured: bool = Field(description="False while the seller has stored no policy and the default applies.")
    updated_at: datetime | None
