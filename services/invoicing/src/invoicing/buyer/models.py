"""What invoicing knows of a buyer, from the latest CustomerUpserted revision."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, false
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
