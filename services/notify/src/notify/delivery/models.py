"""The delivery log (one row per message notify decided to send) and the invoices it has heard of."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Index, Numeric, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from notify.db import Base


class Delivery(Base, table=True):
    """One message to one recipient. Its id is derived from (cause event, template), so the same
    event can never queue the same message twice. Status: pending → sending → sent; back to
    pending with a later next_attempt_at after an SMTP failure; failed after the last attempt;
    no_recipient when nobody could be addressed."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_tenant_created", "tenant", "created_at", "delivery_id"),
        Index("ix_delivery_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'sending')")),
    )

    delivery_id: str = Field(primary_key=True)
    tenant: str
    channel: str
    template: str
    account_id: str = Field(index=True)
    seller_id: str
    invoice_id: str | None = None
    cause_event_id: str
    recipient: str | None = None
    from_name: str
    from_email: str
    subject: str
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    body_html: str = Field(sa_column=Column(Text, nullable=False))
    # Documents fetched by the sender at send time: [{"url", "filename", "content_type"}].
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")))
    status: str
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class KnownInvoice(Base, table=True):
    """What a later notification about an invoice needs to name it (payments' events carry only
    the invoice id)."""

    __tablename__ = "known_invoice"

    invoice_id: str = Field(primary_key=True)
    tenant: str
    number: str
    seller_id: str
    seller_name: str
    buyer_account_id: str
    buyer_name: str
    buyer_email: str | None = None
    total: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    issued_on: date
    due_on: date
    # The invoice's PDF as its buyer opens it (an absolute shared link), for later mails about it.
    document_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
