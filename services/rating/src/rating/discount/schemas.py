"""API models of discounts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from billing_events import DecimalStr


class DiscountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["subscription", "product", "invoice"]
    subscription_id: str | None = Field(default=None, description="scope subscription: the subscription discounted.")
    product_code: str | None = Field(default=None, description="scope product: the product discounted.")
    account_id: str | None = Field(default=None, description="scope invoice: the account; scope product: optionally one account.")
    percent: JsonValue = Field(default=None, description="A percentage off, 0–100, as a decimal string.")
    amount: JsonValue = Field(default=None, description="A fixed amount off per period, in the invoice currency.")
    first_period: str = Field(description="The first period discounted, YYYY-MM.")
    periods: int | None = Field(default=None, ge=1, le=1200, description="For this many periods; none: until removed.")


class DiscountOut(BaseModel):
    discount_id: str
    scope: str
    subscription_id: str | None
    product_code: str | None
    account_id: str | None
    percent: DecimalStr | None
    amount: DecimalStr | None
    first_period: str
    periods: int | None
    created_at: datetime


class DiscountList(BaseModel):
    """Every discount the seller has granted, by id."""

    items: list[DiscountOut]
