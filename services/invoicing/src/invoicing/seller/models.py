"""A seller's invoicing settings (the tenant issuing invoices)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, Text
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
    # The logo printed on the documents: a data: URI (PNG or JPEG), kept here so that a document
    # renders the same every time and rendering never fetches anything from the network.
    logo: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Where buyers pay by transfer (EN 16931 BT-84/BT-86), and the SEPA creditor identifier
    # (BT-90) printed on direct-debit invoices.
    iban: str | None = None
    bic: str | None = None
    # The account holder (BT-85), when it is not the seller's name. This profile is the one place a
    # seller's bank account is kept: notify's emails learn it from SellerPaymentAccountChanged.
    bank_account_name: str | None = None
    sepa_creditor_id: str | None = None
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
