"""API models of webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from billing_runtime.api import Page


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=r"^https?://[^\s\"'<>]+$")
    event_types: list[str] = Field(min_length=1, max_length=50, description="CloudEvents types, e.g. billing.invoice.issued.v1, or `*` for all.")
    description: str | None = Field(default=None, max_length=500)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(default=86400, ge=0, le=7 * 86400, description="How long the previous secret keeps signing deliveries.")


class EndpointOut(BaseModel):
    endpoint_id: str
    url: str
    event_types: list[str]
    description: str | None
    created_at: datetime
    previous_secret_expires_at: datetime | None


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="Shown when the endpoint is created and when its secret is rotated, never again.")


class WebhookDeliveryOut(BaseModel):
    delivery_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None


class EndpointList(Page[EndpointOut]):
    """The seller's webhook endpoints, on one page."""


class WebhookDeliveryPage(Page[WebhookDeliveryOut]):
    """The latest deliveries to one endpoint (`limit` of them, newest first; `next_cursor` is always null)."""
