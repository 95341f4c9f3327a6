"""Invoice comparison reports (seed 001): one per wholesale invoice, against the buyer's previous one;
made from the period's rated charges on the first business day when rating announces them ahead of
the bill run (`basis` `rated_charges`), and brought to the invoice's lines when it is issued."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


class ComparisonReport(Base, table=True):
    __tablename__ = "comparison_report"

    report_id: str = Field(primary_key=True)
    seller_id: str = Field(index=True)
    buyer_account_id: str
    # The invoice's id, derived from (seller, buyer, period): ahead of the bill run, the id it will have.
    invoice_id: str = Field(unique=True)
    previous_invoice_id: str | None = None
    period_start: date
    period_end: date
    currency: str
    this_period_total: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    last_period_total: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    rows: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    basis: str = Field(default="invoice", sa_column=Column(String, nullable=False, server_default="invoice"))  # or rated_charges
    invoice_expected_on: date | None = None
