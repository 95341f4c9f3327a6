"""What invoicing knows of a buyer, from the latest CustomerUpserted revision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


class Buyer(Base, table=True):
    __tablename__ = "buyer"

    account_id: str = Field(primary_key=True)
    partner_id: str = Field(index=True)
    external_id: str
    name: str
    billing_email: str
    country: str
    currency: str
    business: bool
    vat_id: str | None = None
    revision: int
    address: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    tax_exempt: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    # The VAT id passed its checks (checksum, and VIES when configured): reverse charge allowed.
    vat_id_valid: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    vat_id_note: str | None = None


class BuyerMandate(Base, table=True):
    """The buyer's direct-debit mandate as payments last announced it (MandateChanged): an active
    one makes its invoices say "collected by direct debit" with the mandate reference (BT-89)."""

    __tablename__ = "buyer_mandate"

    account_id: str = Field(primary_key=True)
    seller_id: str = Field(index=True)
    mandate_id: str
    provider: str
    status: str


class BuyerCollectingMethod(Base, table=True):
    """The card or mandate payments collects the buyer's invoices from, as it last announced it
    (CollectingMethodChanged); `method` None: none left. A card makes the buyer's invoices say
    "Paid by card ending 4242" (BT-87); a mandate, "collected by direct debit" (BT-89)."""

    __tablename__ = "buyer_collecting_method"

    seller_id: str = Field(primary_key=True)
    account_id: str = Field(primary_key=True)
    method_id: str | None = None
    method: str | None = None  # card | direct_debit
    provider: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    mandate_id: str | None = None
    changed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
