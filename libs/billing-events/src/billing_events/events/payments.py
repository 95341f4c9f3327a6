"""Events emitted by payments: money received, failed, refunded; mandates."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import Field

from billing_events import topics
from billing_events.envelope import EventData
from billing_events.events.invoicing import RefundDestination
from billing_events.money import Money

PaymentMethod = Literal["bank_transfer", "card", "direct_debit"]


class PaymentSucceeded(EventData):
    event_type: ClassVar[str] = "billing.payment.succeeded.v1"
    topic: ClassVar[topics.Topic] = topics.PAYMENTS

    payment_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    amount: Money
    method: PaymentMethod
    provider: str
    paid_on: date
    reference: str | None = None

    def partition_key(self) -> str:
        return self.account_id


class PaymentFailed(EventData):
    event_type: ClassVar[str] = "billing.payment.failed.v1"
    topic: ClassVar[topics.Topic] = topics.PAYMENTS

    payment_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    amount: Money
    method: PaymentMethod
    provider: str
    failed_on: date
    reason_code: str
    reason: str

    def partition_key(self) -> str:
        return self.account_id


class PaymentRefunded(EventData):
    event_type: ClassVar[str] = "billing.payment.refunded.v1"
    topic: ClassVar[topics.Topic] = topics.PAYMENTS

    refund_id: str
    payment_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    amount: Money
    refunded_on: date
    credit_note_id: str | None = Field(default=None, description="The credit note (CreditNoteIssued.credit_note_id) this refund gives money back for.")
    credit_note_number: str | None = None
    refund_to: RefundDestination | None = Field(
        default=None, description="original_method: back through the provider or by SEPA credit transfer; buyer_balance: kept as the buyer's balance."
    )
    method: PaymentMethod | Literal["account_credit"] | None = Field(default=None, description="How the money went back.")
    provider: str | None = Field(default=None, description="stripe, gocardless, sepa_credit_transfer or account_credit.")
    provider_ref: str | None = Field(default=None, description="The provider's refund id, or the SEPA refund file's id at payments.")

    def partition_key(self) -> str:
        return self.account_id


class MandateChanged(EventData):
    event_type: ClassVar[str] = "billing.mandate.changed.v1"
    topic: ClassVar[topics.Topic] = topics.PAYMENTS

    mandate_id: str
    seller_id: str
    account_id: str
    provider: str
    status: Literal["pending", "active", "failed", "cancelled", "expired"]

    def partition_key(self) -> str:
        return self.account_id
