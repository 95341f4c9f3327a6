"""Events emitted by payments: money received, failed, refunded; mandates.

Each is about a seller's buyer, and its `seller_id` is the tenant it is published under
(`tenant_field`): a consumer refuses one naming another tenant (`foreign_tenant`)."""

from __future__ import annotations

from datetime import date, datetime
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
    tenant_field: ClassVar[str | None] = "seller_id"

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
    tenant_field: ClassVar[str | None] = "seller_id"

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
    tenant_field: ClassVar[str | None] = "seller_id"

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
    tenant_field: ClassVar[str | None] = "seller_id"

    mandate_id: str
    seller_id: str
    account_id: str
    provider: str
    status: Literal["pending", "active", "failed", "cancelled", "expired"]

    def partition_key(self) -> str:
        return self.account_id


class CollectingMethodChanged(EventData):
    """The method payments now collects the buyer's invoices from changed: a card saved or removed,
    a mandate activated or cancelled, another default chosen. `method` None: none left (the buyer
    pays by bank transfer). Invoicing prints it as the invoice's payment instructions ("Paid by card
    ending 4242", EN 16931 BG-16); the card's number never reaches payments, only what Stripe shows."""

    event_type: ClassVar[str] = "billing.collecting_method.changed.v1"
    topic: ClassVar[topics.Topic] = topics.PAYMENTS
    tenant_field: ClassVar[str | None] = "seller_id"

    seller_id: str
    account_id: str
    changed_at: datetime = Field(description="When payments made the change: a consumer keeps the latest and ignores an older one.")
    method_id: str | None = Field(default=None, description="Payments' id of the method; None when no card or mandate is left.")
    method: Literal["card", "direct_debit"] | None = None
    provider: str | None = Field(default=None, description="stripe (card) or gocardless (direct debit).")
    card_brand: str | None = Field(default=None, description="As Stripe names it: visa, mastercard, amex...")
    card_last4: str | None = Field(default=None, description="The card's last four digits, as Stripe gives them (card.last4).")
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    mandate_id: str | None = Field(default=None, description="The GoCardless mandate of a direct debit (the reference printed as BT-89).")

    def partition_key(self) -> str:
        return self.account_id
