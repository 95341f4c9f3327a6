"""API models of payments."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_events import DecimalStr
from billing_runtime.api import Page

ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")


class BankTransferIn(BaseModel):
    """A bank transfer as finance enters it. `id` is finance's own payment id (idempotency key)."""

    model_config = ConfigDict(extra="forbid")

    id: str = ID
    invoice_id: str | None = Field(default=None, min_length=1, max_length=128)
    invoice_number: str | None = Field(default=None, min_length=1, max_length=64)
    # Taken raw and judged by the service, so that a float or a non-positive amount gets its
    # own stable code (`invalid_amount`) rather than a generic validation error.
    amount: Any
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    received_on: date
    reference: str | None = Field(default=None, max_length=140)


class PaymentOut(BaseModel):
    payment_id: str
    invoice_id: str
    invoice_number: str
    account_id: str | None = Field(default=None, description="The buyer who paid.")
    provider: str | None = Field(default=None, description="`bank_transfer`, `stripe`, `gocardless` or `account_credit`.")
    amount: DecimalStr
    currency: str
    received_on: date
    reference: str | None
    method: Literal["bank_transfer", "card", "direct_debit"]
    status: Literal["succeeded", "reversed"]
    open_after: DecimalStr
    overpaid: DecimalStr


class PaymentPage(Page[PaymentOut]):
    """One page of the seller's payments."""
