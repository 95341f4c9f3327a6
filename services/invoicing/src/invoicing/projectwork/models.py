"""Project-work statements (seed 001): informational, numbered in their own gapless series per seller."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


class ProjectWorkStatement(Base, table=True):
    __tablename__ = "project_work_statement"
    __table_args__ = (
        # One statement per entry of time and materials: a replayed ProjectWorkRecorded issues nothing.
        UniqueConstraint("seller_id", "entry_id", name="uq_project_work_statement_seller_entry"),
        UniqueConstraint("seller_id", "seq", name="uq_project_work_statement_seller_seq"),
    )

    statement_id: str = Field(primary_key=True)
    seller_id: str = Field(index=True)
    buyer_account_id: str
    entry_id: str
    seq: int
    number: str
    issued_on: date
    tier: str
    currency: str
    seller: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    buyer: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    end_customer_id: str
    end_customer_name: str | None = None
    product_code: str
    description: str
    category: str | None = None
    unit: str | None = None
    performed_on: date
    quantity: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    unit_price: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    billed_with_period_start: date
    billed_with_period_end: date
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ProjectWorkStatementCounter(Base, table=True):
    """The statements' own series per seller (`{prefix}-PW-000001`), apart from invoices and credit notes."""

    __tablename__ = "project_work_statement_counter"

    seller_id: str = Field(primary_key=True)
    last_seq: int = Field(default=0)
