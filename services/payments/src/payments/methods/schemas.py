"""API models of payment methods."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MethodType = Literal["card", "direct_debit", "bank_transfer"]


class PaymentMethodIn(BaseModel):
    """A payment method to set up for a buyer. `id` is the seller's own id (idempotency key)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
    type: MethodType
    email: str | None = Field(default=None, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="direct debit: the mandate's currency (picks the scheme)")
    redirect_uri: str | None = Field(default=None, max_length=500)


class PaymentMethodOut(BaseModel):
    method_id: str
    account_id: str
    type: MethodType
    provider: str
    status: Literal["pending", "active", "failed", "cancelled", "expired"]
    # What the buyer's browser needs to finish the setup: Stripe.js confirms the SetupIntent with
    # `client_secret`; the payer opens GoCardless's `authorisation_url`. Card and bank details
    # go to the provider, never to us.
    client_secret: str | None = None
    authorisation_url: str | None = None
    method_ref: str | None = None
    details: dict[str, Any] = {}
    created_at: datetime
    updated_at: datetime
