"""Partner webhook endpoints and the deliveries to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from notify.db import Base


class WebhookEndpoint(Base, table=True):
    """A partner's URL subscribed to event types. The secret signs every delivery; after a
    rotation the previous secret signs too until `previous_secret_expires_at` (a grace period for
    the receiver to switch)."""

    __tablename__ = "webhook_endpoint"

    endpoint_id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    url: str
    event_types: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    description: str | None = None
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class WebhookDelivery(Base, table=True):
    """One event to one endpoint. The id is derived from (endpoint, event), so a redelivered
    event queues nothing new and every attempt carries the same `Webhook-Id`."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'sending')")),
        Index("ix_webhook_delivery_endpoint_created", "endpoint_id", "created_at", "delivery_id"),
    )

    delivery_id: str = Field(primary_key=True)
    tenant: str
    endpoint_id: str
    event_id: str
    event_type: str
    account_id: str
    seller_id: str
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_status_code: int | None = None
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
