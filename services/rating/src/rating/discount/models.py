"""Tables: the seller's discounts (seeds 000, 004)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, Numeric
from sqlmodel import Field

from rating.db import Base


class Discount(Base, table=True):
    __tablename__ = "discount"

    seller_id: str = Field(primary_key=True)
    discount_id: str = Field(primary_key=True)
    scope: str  # subscription | product | invoice
    account_id: str | None = None  # resolved from the subscription for a subscription discount
    product_code: str | None = None
    subscription_id: str | None = None
    percent: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    first_period: str
    periods: int | None = None
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
