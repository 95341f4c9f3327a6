"""API models of a seller's collection settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_events.money import DecimalText
from billing_runtime.api import Page
from payments.methods.schemas import MethodType

SurplusAction = Literal["refund", "credit"]


class CollectionSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    surplus: SurplusAction = Field(
        description="money a second success brings for an invoice already paid: refunded through the provider, or kept as the buyer's credit"
    )


class CollectionSettingsOut(BaseModel):
    surplus: SurplusAction
    updated_at: datetime | None


class AttemptOut(BaseModel):
    """One attempt to collect an invoice through the buyer's payment method."""

    attempt_id: str
    attempt_no: int = Field(description="1 for the first attempt, then one more per retry.")
    method: MethodType
    provider: str
    status: Literal["pending", "processing", "unknown", "succeeded", "failed", "canceled"] = Field(
        description="unknown: the provider did not answer (a timeout, a 5xx); the attempt is asked about again."
    )
    amount: DecimalText
    currency: str
    charge_on: date
    provider_ref: str | None = Field(description="The provider's id of the charge.")
    reason_code: str | None = Field(description="Why it failed, as a stable code.")
    reason: str | None
    surplus: DecimalText | None = Field(description="What a success brought beyond what the invoice still asked; null when nothing.")
    surplus_action: SurplusAction | None = Field(description="What became of the surplus: refunded through the provider or kept as the buyer's credit.")


class RefundOut(BaseModel):
    """Money given back for the invoice (for a credit note, or a surplus)."""

    refund_id: str
    payment_id: str
    credit_note_id: str | None = Field(description="The credit note refunded; null for a surplus.")
    status: Literal["pending", "succeeded", "failed", "unknown"]
    amount: DecimalText
    currency: str
    provider_ref: str | None
    provider: str = Field(description="stripe, gocardless, sepa_credit_transfer or account_credit.")
    method: str | None = Field(description="card, direct_debit, bank_transfer or account_credit.")
    refund_to: str | None = Field(description="original_method or buyer_balance.")
    reason: str | None
    file_url: str | None = Field(description="For a SEPA credit transfer: its pain.001 file, to hand to the bank.")


class AttemptPage(Page[AttemptOut]):
    """Every collection attempt of the invoice, first to last (one page: `next_cursor` is null), and its refunds."""

    refunds: list[RefundOut]


class CreditOut(BaseModel):
    """What the buyer paid beyond its invoices, per currency, kept for its next invoices."""

    amount: DecimalText
    currency: str


class AccountCredit(BaseModel):
    account_id: str
    credit: list[CreditOut] = Field(description="One entry per currency the buyer has credit in; empty for none.")
