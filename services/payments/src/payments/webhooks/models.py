"""Provider events already applied, by seller, provider and the provider's own event id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from payments.db import Base


class ProviderEvent(Base, table=True):
    __tablename__ = "provider_event"

    # Per seller: event ids are the provider's, and one seller must not be able to make another's
    # genuine event a "duplicate" by posting the same id, signed with its own secret, first.
    tenant: str = Field(primary_key=True)
    provider: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    type: str
    effect: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
