"""A seller's credentials at a provider: each partner collects into its own account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from payments.db import Base


class ProviderAccount(Base, table=True):
    __tablename__ = "provider_account"

    tenant: str = Field(primary_key=True)
    provider: str = Field(primary_key=True)
    # Secrets: never logged, never returned by the API (only their last four characters).
    api_key: str
    webhook_secret: str
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
