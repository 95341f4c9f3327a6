"""API models of payment methods."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_runtime.api import Page


class MethodType(StrEnum):
    """How a buyer pays: by card (Stripe), by direct debit (GoCardless) or by bank transfer."""

    CARD = "card"
    DIRECT_DEBIT = "direct_debit"
    BANK_TRANSFER = "bank_transfer"


class PaymentMethodIn(BaseModel):
    """A payment method to set up for a buyer. `id` is the seller's own id (idempotency key)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
    type: MethodType
    email: str | None = Field(default=None, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="direct debit: the mandate's currency (picks the scheme)")
    redirect_uri: str | None = Field(
        default=None,
        max_length=500,
        pattern=r"^https?://",
        description="Where the provider's hosted page sends the buyer's browser back to. Direct debit: the billing request flow's "
        "`redirect_uri`. Card: given, the card is saved on Stripe Checkout's hosted page in setup mode (answered with `setup_url`); "
        "not given, a SetupIntent for Stripe.js (answered with `client_secret`).",
    )
    cancel_uri: str | None = Field(
        default=None, max_length=500, pattern=r"^https?://", description="Card on Checkout: where Cancel goes (default `redirect_uri`)."
    )


class DefaultMethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method_id: str = Field(min_length=1, max_length=128)


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
    setup_url: str | None = Field(default=None, description="The provider's hosted page to send the buyer to while the method is pending.")
    method_ref: str | None = None
    is_default: bool = False
    details: dict[str, Any] = Field(default={}, description="card: `brand`, `last4`, `exp_month`, `exp_year`; direct debit: `scheme`")
    removed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class PaymentMethodList(Page[PaymentMethodOut]):
    """The buyer's payment methods (removed ones left out), on one page."""
