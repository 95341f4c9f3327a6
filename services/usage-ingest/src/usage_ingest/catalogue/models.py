"""The projection of rating's catalogue (one row per seller and product code, at its latest revision)
and of its calendar (one row per closed bill run)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from usage_ingest.db import Base


class CatalogueProduct(Base, table=True):
    __tablename__ = "catalogue_product"

    seller_id: str = Field(primary_key=True)
    product_code: str = Field(primary_key=True, index=True)
    name: str
    quantity_rule: str
    allows_credits: bool
    # The distributor's product: a partner that does not define the code itself orders this one.
    wholesale: bool
    revision: int
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ClosedPeriod(Base, table=True):
    """A seller's period that a bill run has closed (rating's `BillRunClosed`): nothing historic
    may be imported into it. A wholesale run (the distributor's) closes the period for every partner."""

    __tablename__ = "closed_period"

    bill_run_id: str = Field(primary_key=True)
    seller_id: str = Field(index=True)
    tier: str
    period_start: date
    period_end: date
    closed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
