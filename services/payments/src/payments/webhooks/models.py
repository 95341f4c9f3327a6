"""Provider events already applied, by the provider's own event id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from payments.db import Base


class ProviderEvent(Base, table=True):
    __tablename__ = "provider_event"

    provider: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    tenant: str
    type: str
    effect: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
