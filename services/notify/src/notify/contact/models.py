"""The billing contact of each account, projected from CustomerUpserted (latest revision wins)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from notify.db import Base


class Contact(Base, table=True):
    __tablename__ = "contact"

    account_id: str = Field(primary_key=True)
    partner_id: str = Field(index=True)
    name: str
    billing_email: str
    revision: int
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
