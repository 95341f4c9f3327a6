"""The invoice projection: what payments needs to know of an issued invoice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Column, Numeric, UniqueConstraint
from sqlmodel import Field

from payments.db import Base


class Invoice(Base, table=True):
    __tablename__ = "invoice"
    # Invoice numbers are unique per seller; finance quotes them on bank transfers.
    __table_args__ = (UniqueConstraint("tenant", "number"),)

    invoice_id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    number: str
    seller_id: str
    account_id: str = Field(index=True)
    currency: str
    total: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    amount_received: Decimal = Field(sa_column=Column(Numeric, nullable=False, server_default="0"))
    issued_on: date
    due_on: date
    buyer_name: str | None = None
    # ISO 11649 structured creditor reference (RF...) the buyer quotes on a bank transfer.
    creditor_reference: str | None = Field(default=None, index=True)
    amount_credited: Decimal = Field(sa_column=Column(Numeric, nullable=False, server_default="0"))
