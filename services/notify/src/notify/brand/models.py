"""A seller's brand: how its mail looks and whom it comes from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field

from notify.db import Base


class Brand(Base, table=True):
    __tablename__ = "brand"

    tenant: str = Field(primary_key=True)
    sender_name: str
    sender_email: str | None = None
    logo_url: str | None = None
    primary_color: str
    footer: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # What a mail tells the reader to do next: whom to ask, where to pay, the account to transfer to.
    support_email: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    support_phone: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    portal_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    bank_account_name: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    iban: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    bic: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PaymentAccount(Base, table=True):
    """The bank account a seller's buyers pay into, as invoicing's seller profile announces it
    (SellerPaymentAccountChanged): invoicing keeps it, notify only shows it in how-to-pay. While a
    seller has no row here, the bank columns its brand had before are shown (legacy, read-only)."""

    __tablename__ = "payment_account"

    tenant: str = Field(primary_key=True)
    account_name: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    iban: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # null: no bank transfers
    bic: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))  # the profile's, from the event
