"""Evidence of the checks made on buyers' VAT numbers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


class VatCheck(Base, table=True):
    __tablename__ = "vat_check"

    check_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    revision: int
    vat_id: str
    checksum_valid: bool
    checksum_reason: str | None = None
    vies_outcome: str | None = None
    vies_request_identifier: str | None = None
    vies_response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    checked_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
