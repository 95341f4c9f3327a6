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
