"""API models of the catalogue, the price lists and the seller's billing profile."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from billing_events import DecimalStr
from billing_runtime.api import Page
from rating.policy import PolicyIn, QuantityRule

PRODUCT_CODE = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
ProductKind = Literal["recurring", "usage", "one_time", "project_work", "shipping"]

# Seed 001's invoice categories ("totals per category"), offered to sellers; a product may name another.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("Co-Managed Services", "co-managed services"),
    ("Communications", "e.g. Microsoft 365"),
    ("Hardware as a Project", "e.g. server builds, SharePoint changes"),
    ("Hardware Purchase", "e.g. Fortinet equipment purchased through the distributor"),
    ("Miscellaneous", "e.g. shipping"),
    ("Print Services", "print services"),
    ("Remote Monitoring and Management", "e.g. server, workstation and user"),
    ("Software as a Service", "e.g. security awareness, PSA licences"),
    ("Security Products", "e.g. Fortinet, UTM"),
)


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    # Checked by the service rather than typed here, so a float or a negative price gets its
    # own problem code (`invalid_price`) instead of a generic validation error.
    unit_price: JsonValue = Field(default=None, description="Undated per-unit list price; dated prices go to /v1/price-list.")
    currency: JsonValue = None
    description: str | None = Field(default=None, max_length=2000)
    category: str | None = Field(default=None, max_length=100)
    quantity_rule: QuantityRule
    snapshot_day: int | None = None
    unit: str | None = Field(default=None, max_length=40)
    tax_category: str | None = Field(default=None, max_length=40)
    kind: ProductKind | None = Field(default=None, description="Default: usage for usage_sum, else recurring.")
    policy: PolicyIn | None = None


class ProductOut(BaseModel):
    code: str
    name: str
    description: str | None
    category: str | None
    unit_price: DecimalStr | None
    currency: str | None
    quantity_rule: QuantityRule
    unit: str | None
    tax_category: str | None
    kind: str
    policy: dict[str, Any] = Field(description="The product's full billing policy, defaults included.")
    updated_at: datetime


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effective_from: date = Field(description="Applies to periods starting on or after this date.")
    currency: JsonValue = None
    price: dict[str, JsonValue] = Field(description="A price model: {model: per_unit|graduated|volume|package|flat|cost_plus|markup, ...}.")


class PriceOut(BaseModel):
    product_code: str
    effective_from: date
    currency: str | None
    price: dict[str, Any]
    updated_at: datetime


class MarkupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effective_from: date
    markup_percent: JsonValue


class SellerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str | None = Field(default=None, pattern="^[A-Z]{3}$", description="The main currency.")
    currencies: list[Annotated[str, Field(pattern="^[A-Z]{3}$")]] = Field(
        default_factory=list,
        max_length=50,
        description="Every other currency the seller bills buyers in; each needs its own price list (its prices in that currency).",
    )
    country: str | None = Field(default=None, pattern="^[A-Z]{2}$")
    time_zone: str = "UTC"
    issue_day: int | None = Field(default=None, ge=1, le=28, description="Day of the month after the period; default the first business day.")
    scheduled: bool = Field(default=False, description="Run bill runs automatically on the issue day.")


class SellerOut(SellerIn):
    seller_id: str
    is_distributor: bool
    updated_at: datetime


class OrderCheckIn(BaseModel):
    """An order as it is (or will be) posted to usage-ingest, checked against the price lists."""

    model_config = ConfigDict(extra="forbid")

    product_code: str = Field(pattern=PRODUCT_CODE)
    start_on: date
    account_id: str | None = Field(default=None, max_length=200, description="The buyer; its currency is the one its customer record gave.")
    currency: JsonValue = Field(default=None, description="The buyer's currency, for a buyer not posted yet (wins over the account's).")


class PricingOut(BaseModel):
    product_code: str
    period: str = Field(description="The period checked: the one containing the order's start.")
    currency: str | None = Field(description="The buyer's invoice currency (null: the buyer is not known yet).")
    priced: bool | None = Field(description="Whether the product (and its setup product) has a price in that currency.")
    problem: str | None = Field(default=None, description="no_price_in_currency, no_price or unknown_account.")
    unpriced_products: list[str] = Field(default_factory=list)
    priced_in: str | None = Field(default=None, description="A currency the product does have a price in.")
    wholesale_priced: bool | None = Field(
        default=None,
        description="A partner's order: whether the distributor's wholesale list prices it in the partner account's currency (null: no such account).",
    )


class ProductPage(Page[ProductOut]):
    """One page of the caller's products, by code (`next_cursor` goes in `after`)."""


class PriceList(BaseModel):
    """The caller's dated price-list entries (and markup rules)."""

    items: list[PriceOut]


class CategoryOut(BaseModel):
    name: str
    examples: str = Field(description="What belongs in it, in seed 001's words.")


class CategoryList(BaseModel):
    """The invoice categories of seed 001."""

    items: list[CategoryOut]
