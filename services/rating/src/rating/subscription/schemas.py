"""API models of subscriptions as rated: their policy and the dates it makes effective."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from billing_events import DecimalStr
from billing_runtime.api import Page
from rating.catalogue.schemas import PricingOut


class StepOut(BaseModel):
    order_id: str
    quantity: DecimalStr
    requested_on: date
    asked_for: date
    effective_on: date


class SubscriptionOut(BaseModel):
    subscription_id: str
    account_id: str
    product_code: str
    ordered_at: datetime
    setup_exempt: bool
    policy: dict[str, Any]
    policy_overrides: dict[str, Any]
    starts_on: date
    billing_starts_on: date
    steps: list[StepOut]
    cancel_requested_on: date | None
    cancel_asked_for: date | None
    commitment_ends_on: date | None
    ends_on: date | None
    last_billed_period: str | None
    pricing: PricingOut | None = Field(
        default=None, description="Whether the product has a price in the buyer's currency for the current (or first) billed period."
    )


class AccountSubscriptionOut(BaseModel):
    """One subscription of a buyer as its end customer sees it (the portal's account summary)."""

    subscription_id: str
    product_code: str
    product_name: str | None
    quantity: DecimalStr = Field(description="The quantity in force on `as_of` (the ordered one before the subscription starts).")
    unit: str | None
    term: str = Field(description="`monthly` or `annual`: the billing interval of its policy.")
    timing: str = Field(description="`advance` or `arrears`.")
    status: str = Field(description="`upcoming` (starts later), `active`, `ending` (cancelled, ends on `ends_on`), `ended`.")
    starts_on: date
    ends_on: date | None
    commitment_ends_on: date | None
    as_of: date


class AccountSubscriptionPage(Page[AccountSubscriptionOut]):
    """All of one buyer's subscriptions with the caller, on one page (`next_cursor` is always null)."""
