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
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
