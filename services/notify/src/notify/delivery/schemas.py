"""API models of the delivery log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from billing_runtime.api import Page


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    NO_RECIPIENT = "no_recipient"


class DeliveryOut(BaseModel):
    delivery_id: str
    channel: str
    template: str
    account_id: str
    invoice_id: str | None
    recipient: str | None
    subject: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    cause_event_id: str


class DeliveryPage(Page[DeliveryOut]):
    """One page of the seller's delivery log."""


class DeliveryDetail(DeliveryOut):
    from_name: str
    from_email: str
    body_text: str
    body_html: str
