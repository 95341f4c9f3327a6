"""Rendered documents, kept once rendered: an issued invoice never changes, so neither does its PDF."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary
from sqlmodel import Field

from invoicing.db import Base


class RenderedDocument(Base, table=True):
    __tablename__ = "document"

    owner_kind: str = Field(primary_key=True, description="invoice or credit_note")
    owner_id: str = Field(primary_key=True)
    format: str = Field(primary_key=True, description="pdf (Factur-X PDF/A-3 with the XML inside) or xml (CII)")
    seller_id: str
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    rendered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
