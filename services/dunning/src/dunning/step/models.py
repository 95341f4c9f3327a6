"""Steps reached: one row per (case, day offset, action). The primary key is what makes each
step happen once, whichever replica or loop evaluates the case and however often."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Column, Numeric
from sqlmodel import Field

from dunning.db import Base


class CaseStep(Base, table=True):
    __tablename__ = "case_step"

    case_id: str = Field(primary_key=True)
    days_after_due: int = Field(primary_key=True)
    action: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    step: int
    reached_on: date
    amount_overdue: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
