"""Tables: bill runs (one per seller and period, by construction) and the charges each rated."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from rating.db import Base


class BillRun(Base, table=True):
    __tablename__ = "bill_run"
    # The id is derived from (seller, period) already; the constraint says so in the schema too.
    __table_args__ = (UniqueConstraint("seller_id", "period", name="uq_bill_run_seller_period"),)

    id: str = Field(primary_key=True)
    seller_id: str
    period: str
    period_start: date
    period_end: date
    tier: str = "retail"  # wholesale: the distributor's run, one PeriodClosed per partner
    buyers: int
    lines: int
    unrated: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RatedCharge(Base, table=True):
    """A line a bill run rated, as emitted in PeriodClosed."""

    __tablename__ = "rated_charge"

    line_id: str = Field(primary_key=True)
    bill_run_id: str = Field(index=True)
    seller_id: str
    account_id: str = Field(index=True)  # the buyer of the invoice
    end_customer_id: str | None = None
    product_code: str
    description: str
    category: str | None = None
    service_period_start: date
    service_period_end: date
    quantity: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    unit_price: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    quantity_rule: str
    kind: str = "recurring"
    late: bool = False


class ChargesPreview(Base, table=True):
    """A seller's period whose charges were announced ahead of its bill run (ChargesRated, one per
    buyer account), on the first business day after the period: once per seller and period."""

    __tablename__ = "charges_preview"

    seller_id: str = Field(primary_key=True)
    period: str = Field(primary_key=True)
    accounts: int
    rated_on: date
    bill_run_on: date
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
