"""Tables: the seller's catalogue, its dated price lists and its billing profile."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, Column, DateTime, Integer, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from rating.db import Base
from rating.policy import QuantityRule

__all__ = ["QuantityRule", "Product", "Price", "SellerProfile"]

MARKUP_RULE = "*"  # the product code of a seller-wide markup rule over wholesale


class Product(Base, table=True):
    __tablename__ = "product"

    seller_id: str = Field(primary_key=True)
    code: str = Field(primary_key=True)
    name: str
    description: str | None = None
    category: str | None = None
    # The seller's undated list price (per unit); dated entries of the price list take precedence.
    unit_price: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    currency: str | None = None
    quantity_rule: str
    unit: str | None = None
    tax_category: str | None = None
    kind: str = "recurring"
    policy: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Increases with every change of the content: the `revision` of its ProductPublished event.
    revision: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))


class Price(Base, table=True):
    """One entry of a seller's price list: a product's price model from a date (or, under the
    product code `*`, a markup rule over wholesale for every product without its own entry)."""

    __tablename__ = "price"

    seller_id: str = Field(primary_key=True)
    product_code: str = Field(primary_key=True)
    effective_from: date = Field(primary_key=True)
    # One list per currency: "" for a markup entry (its currency is its wholesale base's).
    currency: str = Field(default="", primary_key=True)
    model: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SellerProfile(Base, table=True):
    """What rating needs to know of a seller: its currency, its country (business days), its time
    zone (periods) and its issue day (scheduled bill runs)."""

    __tablename__ = "seller_profile"

    seller_id: str = Field(primary_key=True)
    currency: str | None = None  # its main currency
    # Every other currency it bills buyers in (a price list per currency).
    currencies: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False, server_default="{}"))
    country: str | None = None
    time_zone: str = "UTC"
    issue_day: int | None = None  # day of the month after the period; None: first business day
    scheduled: bool = False
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
