"""Rendered documents, kept once rendered: an issued invoice never changes, so neither does its PDF."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary, UniqueConstraint
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


class DocumentShare(Base, table=True):
    """A capability link to one document: whoever holds the token may download that document,
    without an API key (the email's attachment and "Download" link, a buyer's browser).
    One per document; the token is 256 random bits."""

    __tablename__ = "document_share"
    __table_args__ = (UniqueConstraint("owner_kind", "owner_id", "format", name="uq_document_share_document"),)

    token: str = Field(primary_key=True)
    seller_id: str
    owner_kind: str = Field(description="invoice, credit_note or comparison_report")
    owner_id: str
    format: str = Field(description="pdf, xml or xlsx")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
