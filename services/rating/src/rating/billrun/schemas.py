"""API models of bill runs, current charges and the margin report."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from billing_events import Money, RatedLine


class BillRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(max_length=16, description="The month to close, as YYYY-MM (in the seller's time zone).")


class UnratedOut(BaseModel):
    account_id: str
    product_code: str
    reason: str
    currency: str | None = Field(default=None, description="currency_mismatch: the buyer's invoice currency, which has no price.")
    priced_in: str | None = Field(default=None, description="currency_mismatch: a currency the product does have a price in.")


class UnpricedCurrencyOut(BaseModel):
    """Buyers a run could not bill (in full) because a product has no price in their currency."""

    currency: str
    account_ids: list[str]
    product_codes: list[str]


class BillRunOut(BaseModel):
    bill_run_id: str
    seller_id: str
    period: str
    period_start: date
    period_end: date
    tier: str = Field(description="retail: a partner's run; wholesale: the distributor's run.")
    created: bool
    buyers: int
    lines: int
    unrated: list[UnratedOut]
    unpriced_currencies: list[UnpricedCurrencyOut] = Field(
        default_factory=list,
        description="Per invoice currency without a price: the buyers and products left unbilled (also in `unrated`, reason currency_mismatch).",
    )


class BillRunPage(BaseModel):
    """One page of a seller's bill runs, newest period first."""

    items: list[BillRunOut]
    limit: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ChargesOut(BaseModel):
    account_id: str
    seller_id: str
    period: str
    period_start: date
    period_end: date
    currency: str
    bill_run_id: str | None = Field(description="The bill run that closed this period, once it has run.")
    lines: list[RatedLine]
    total: Money = Field(description="Sum of the line amounts, unrounded.")
    unrated: list[UnratedOut]


class MarginLine(BaseModel):
    end_customer_id: str
    end_customer_name: str | None
    product_code: str
    currency: str
    retail: str = Field(description="Sum of the retail amounts, unrounded.")
    wholesale: str = Field(description="Sum of the wholesale amounts, unrounded.")
    margin: str | None = Field(description="retail − wholesale; null when the two are in different currencies.")


class MarginOut(BaseModel):
    partner_id: str
    period: str
    lines: list[MarginLine]
