"""Imported bank statements and their credit lines, matched or waiting for finance."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, Numeric
from sqlmodel import Field

from payments.db import Base


class Statement(Base, table=True):
    __tablename__ = "statement"

    tenant: str = Field(primary_key=True)
    statement_id: str = Field(primary_key=True)
    format: str  # camt.053 | mt940
    account: str | None = None
    digest: str
    imported_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class StatementLine(Base, table=True):
    __tablename__ = "statement_line"

    tenant: str = Field(primary_key=True)
    statement_id: str = Field(primary_key=True)
    line_no: int = Field(primary_key=True)
    booked_on: date
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    remittance: str | None = None
    counterparty: str | None = None
    status: str = Field(index=True)  # matched | unmatched
    matched_by: str | None = None  # reference | amount_and_buyer
    invoice_id: str | None = None
    payment_id: str | None = None
