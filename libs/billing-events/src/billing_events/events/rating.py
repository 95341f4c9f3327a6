"""Events emitted by rating: its catalogue as it changes, rated charges and closed periods."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from billing_events import topics
from billing_events.envelope import EventData, Part
from billing_events.money import DecimalStr, Money


class RatedLine(Part):
    line_id: str
    product_code: str
    description: str
    category: str | None = None
    service_period_start: date
    service_period_end: date
    quantity: DecimalStr
    unit_price: Money
    amount: Money = Field(description="quantity × unit price, unrounded; invoicing rounds once.")
    quantity_rule: str
    end_customer_id: str | None = None
    late: bool = Field(
        default=False,
        description="Usage (or a term) of an earlier period that arrived after that period closed; the service period is that earlier period.",
    )
    end_customer_name: str | None = Field(default=None, description="For the per-customer sections of a partner's consolidated invoice.")
    kind: Literal["recurring", "usage", "one_time", "project_work", "shipping", "true_up", "discount"] = Field(
        default="recurring", description="What produced the line; discounts are negative lines."
    )
    timing: Literal["arrears", "advance"] = Field(
        default="arrears", description="Arrears lines take the tax rate of the service period's last day, advance lines of its first."
    )
    tax_category: str | None = Field(default=None, description="The product's tax category (standard, reduced, exempt, ...).")
    unit: str | None = None


class ChargesRated(EventData):
    """An account's charges for a period as rated so far, before its bill run. Rating sends the
    wholesale tier's on the first business day after the period (seed 001's comparison report goes
    out then, ahead of the invoice); the bill run's PeriodClosed carries the final lines."""

    event_type: ClassVar[str] = "billing.charges.rated.v1"
    topic: ClassVar[topics.Topic] = topics.PERIODS

    account_id: str
    seller_id: str
    period_start: date
    period_end: date
    currency: str
    lines: list[RatedLine]
    tier: Literal["retail", "wholesale"] = Field(default="retail", description="As PeriodClosed's: wholesale is the distributor billing a partner.")
    rated_on: date | None = Field(default=None, description="The seller's business day the charges were rated on.")
    bill_run_on: date | None = Field(default=None, description="The day the period's bill run is due (the invoice date), on the seller's calendar.")

    def partition_key(self) -> str:
        return self.account_id


class PeriodClosed(EventData):
    event_type: ClassVar[str] = "billing.period.closed.v1"
    topic: ClassVar[topics.Topic] = topics.PERIODS

    bill_run_id: str
    seller_id: str
    buyer_account_id: str
    period_start: date
    period_end: date
    currency: str
    lines: list[RatedLine]
    tier: Literal["retail", "wholesale"] = Field(
        default="retail",
        description="retail: a partner bills its end customer; wholesale: the distributor bills a partner, lines attributed to end customers.",
    )

    def partition_key(self) -> str:
        return self.buyer_account_id


class BillRunClosed(EventData):
    """A seller's billing period is closed: its bill run has rated it and emitted every PeriodClosed.

    One per bill run (seller and period), on rating's reference topic, so another service can know
    which periods are closed without reading every invoice's lines (usage-ingest refuses a historic
    order, change or cancellation dated in a closed period)."""

    event_type: ClassVar[str] = "billing.bill_run.closed.v1"
    topic: ClassVar[topics.Topic] = topics.CATALOGUE
    tenant_field: ClassVar[str | None] = "seller_id"

    bill_run_id: str
    seller_id: str = Field(description="The tenant whose period closed: a partner (retail) or the distributor (wholesale, all partners).")
    tier: Literal["retail", "wholesale"]
    period_start: date = Field(description="First day of the period, in the seller's time zone.")
    period_end: date = Field(description="Last day of the period, inclusive.")
    closed_at: AwareDatetime

    def partition_key(self) -> str:
        return self.seller_id


class ProductPublished(EventData):
    """A product of a seller's catalogue as it now stands, sent when it is created and whenever it changes.

    `revision` increases with every change, so another service can keep a projection of the
    catalogue (usage-ingest refuses orders of unknown products and credits a product does not
    take). Rating never deletes a product."""

    event_type: ClassVar[str] = "billing.product.published.v1"
    topic: ClassVar[topics.Topic] = topics.CATALOGUE
    tenant_field: ClassVar[str | None] = "seller_id"

    seller_id: str = Field(description="The tenant whose catalogue holds the product.")
    product_code: str
    name: str
    quantity_rule: str
    kind: str
    allows_credits: bool = Field(description="Negative usage of this product is a credit, rated (else refused).")
    wholesale: bool = Field(description="The seller is the distributor: a partner's order or usage of a code it does not define itself is of this product.")
    revision: int = Field(ge=1, description="Increases with every change of the product; the latest revision wins.")
    updated_at: AwareDatetime

    def partition_key(self) -> str:
        return self.seller_id


class ProjectWorkRecorded(EventData):
    """Time and materials entered for an end customer (seed 001's project work): priced as the
    next bill run will bill them, so that invoicing can send the buyer an informational statement
    at once ("no payment is required"); the charges themselves come on the next regular invoice."""

    event_type: ClassVar[str] = "billing.project_work.recorded.v1"
    topic: ClassVar[topics.Topic] = topics.PERIODS
    tenant_field: ClassVar[str | None] = "seller_id"

    entry_id: str = Field(description="The usage record id the entry was posted with; one statement per entry.")
    seller_id: str = Field(description="Who bills the work: the distributor (wholesale), else the partner.")
    buyer_account_id: str = Field(description="Who receives the statement and, later, the invoice: the partner (wholesale), else the end customer.")
    tier: Literal["retail", "wholesale"]
    end_customer_id: str
    end_customer_name: str | None = None
    product_code: str
    description: str
    category: str | None = None
    unit: str | None = None
    performed_on: date
    quantity: DecimalStr
    unit_price: Money
    amount: Money = Field(description="quantity × unit price, unrounded, as the bill run will rate it.")
    billed_with_period_start: date = Field(description="The billing period whose invoice will carry the charge.")
    billed_with_period_end: date

    def partition_key(self) -> str:
        return self.buyer_account_id
