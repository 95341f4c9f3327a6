"""Recorded payments, keyed by (seller, the seller's own payment id)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, Numeric
from sqlmodel import Field

from payments.db import Base


class Payment(Base, table=True):
    __tablename__ = "payment"

    tenant: str = Field(primary_key=True)
    payment_id: str = Field(primary_key=True)
    invoice_id: str = Field(index=True)
    invoice_number: str
    seller_id: str
    account_id: str
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    received_on: date
    method: str
    provider: str
    reference: str | None = None
    status: str
    # The invoice's position right after this payment, kept so a repeated request returns
    # exactly the first answer even when later payments have changed the invoice.
    open_after: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    overpaid: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
