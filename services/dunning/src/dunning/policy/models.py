"""A seller's dunning policy (one row per seller; the default applies until one is stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from dunning.db import Base


class DunningPolicy(Base, table=True):
    __tablename__ = "dunning_policy"

    tenant: str = Field(primary_key=True)
    # [{"days_after_due": 1, "action": "remind"}, ...] in evaluation order.
    steps: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    cascade_to_customers: bool = False
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
