"""A seller's invoicing settings (the tenant issuing invoices)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


class SellerSettings(Base, table=True):
    __tablename__ = "seller_settings"
    __table_args__ = (CheckConstraint("due_rule_kind IN ('net_days', 'day_of_next_month')", name="due_rule_kind"),)

    seller_id: str = Field(primary_key=True)
    name: str
    country: str
    vat_id: str | None = None
    invoice_prefix: str
    due_rule_kind: str
    due_rule_value: int
    email: str | None = None
    address: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    registration: str | None = None
    # Brand for the documents (BILLING-RULES §7: a PDF in the seller's brand).
    brand_color: str | None = None
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
