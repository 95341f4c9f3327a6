"""Project-work statements as the API shows them. Money is a decimal string with the currency's minor digits."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from billing_events.money import DecimalText


class StatementOut(BaseModel):
    """A statement of one entry of time and materials; it is billed with a period's invoice, so it asks for nothing itself."""

    id: str
    number: str = Field(description="In the seller's own series of statements (`{prefix}-PW-000001`).")
    entry_id: str = Field(description="The entry of time and materials it states.")
    buyer_account_id: str
    issued_on: date
    tier: Literal["wholesale", "retail"]
    end_customer_id: str
    end_customer_name: str | None
    product_code: str
    description: str
    performed_on: date
    quantity: DecimalText
    unit_price: DecimalText
    amount: DecimalText
    amount_due: DecimalText = Field(description="Always zero: the amount is billed with the period's invoice.")
    currency: str
    billed_with_period_start: date = Field(description="The period whose invoice bills this work.")
    billed_with_period_end: date


class StatementList(BaseModel):
    """The seller's project-work statements (a key restricted to one account: that account's only)."""

    items: list[StatementOut]
