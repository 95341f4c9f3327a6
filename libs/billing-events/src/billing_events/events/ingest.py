"""Events emitted by usage-ingest: what partners posted, as accepted."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from billing_events import topics
from billing_events.envelope import EventData, Part
from billing_events.money import DecimalStr, Money


class Address(Part):
    """A postal address, as printed on invoices (EN 16931 BG-5/BG-8)."""

    lines: list[str] = Field(default_factory=list, max_length=3)
    city: str | None = None
    postal_code: str | None = None
    region: str | None = None
    country: str = Field(pattern="^[A-Z]{2}$")


class CustomerUpserted(EventData):
    event_type: ClassVar[str] = "billing.customer.upserted.v1"
    topic: ClassVar[topics.Topic] = topics.CUSTOMERS
    tenant_field: ClassVar[str | None] = "partner_id"

    account_id: str
    partner_id: str
    external_id: str
    name: str
    billing_email: str
    country: str = Field(pattern="^[A-Z]{2}$")
    currency: str = Field(pattern="^[A-Z]{3}$")
    business: bool = True
    vat_id: str | None = None
    address: Address | None = None
    tax_exempt: bool = Field(default=False, description="The buyer is exempt from VAT (e.g. a charity or a diplomatic mission).")
    contact_name: str | None = Field(default=None, description="The person to contact about billing (the billing profile).")
    contact_phone: str | None = None
    revision: int = Field(ge=1, description="Increases with every accepted change of this customer.")

    def partition_key(self) -> str:
        return self.account_id


class SubscriptionOrdered(EventData):
    event_type: ClassVar[str] = "billing.subscription.ordered.v1"
    topic: ClassVar[topics.Topic] = topics.ORDERS
    tenant_field: ClassVar[str | None] = "partner_id"

    subscription_id: str
    order_id: str
    account_id: str
    partner_id: str
    product_code: str
    quantity: DecimalStr
    start_on: date
    ordered_at: AwareDatetime
    setup_exempt: bool = Field(default=False, description="No setup fee for this order (seed 001: migration customers).")

    def partition_key(self) -> str:
        return self.account_id


class SubscriptionChanged(EventData):
    event_type: ClassVar[str] = "billing.subscription.changed.v1"
    topic: ClassVar[topics.Topic] = topics.ORDERS
    tenant_field: ClassVar[str | None] = "partner_id"

    subscription_id: str
    order_id: str
    account_id: str
    partner_id: str
    quantity: DecimalStr
    requested_at: AwareDatetime
    effective_on: date

    def partition_key(self) -> str:
        return self.account_id


class SubscriptionCancelled(EventData):
    event_type: ClassVar[str] = "billing.subscription.cancelled.v1"
    topic: ClassVar[topics.Topic] = topics.ORDERS
    tenant_field: ClassVar[str | None] = "partner_id"

    subscription_id: str
    order_id: str
    account_id: str
    partner_id: str
    requested_at: AwareDatetime
    effective_on: date

    def partition_key(self) -> str:
        return self.account_id


class UsageRecorded(EventData):
    event_type: ClassVar[str] = "billing.usage.recorded.v1"
    topic: ClassVar[topics.Topic] = topics.USAGE
    tenant_field: ClassVar[str | None] = "partner_id"

    record_id: str
    account_id: str
    partner_id: str
    product_code: str
    quantity: DecimalStr
    occurred_at: AwareDatetime
    cost: Money | None = Field(default=None, description="Pass-through cost, for cost-plus pricing.")

    def partition_key(self) -> str:
        return self.account_id


class ObservedItem(Part):
    item_id: str
    state: Literal["active", "deleted"]


class QuantityObserved(EventData):
    event_type: ClassVar[str] = "billing.quantity.observed.v1"
    topic: ClassVar[topics.Topic] = topics.USAGE
    tenant_field: ClassVar[str | None] = "partner_id"

    observation_id: str
    account_id: str
    partner_id: str
    product_code: str
    observed_at: AwareDatetime
    source: str
    quantity: DecimalStr | None = None
    items: list[ObservedItem] | None = None

    def partition_key(self) -> str:
        return self.account_id
