"""Comparison reports as the API shows them. Money is a decimal string with the currency's minor digits."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from billing_events.money import DecimalText


class ComparisonRow(BaseModel):
    """One end customer's product, last period against this one."""

    end_customer_id: str | None = Field(default=None, description="null for the seller's own environment.")
    end_customer_name: str
    product_code: str
    description: str
    last_quantity: DecimalText
    last_amount: DecimalText
    this_quantity: DecimalText
    this_amount: DecimalText
    quantity_difference: DecimalText = Field(description="this_quantity − last_quantity.")
    amount_difference: DecimalText = Field(description="this_amount − last_amount.")
    change: Literal["added", "removed", "changed", "unchanged"]


class ComparisonReportOut(BaseModel):
    """A wholesale invoice's comparison report against the buyer's previous invoice."""

    id: str
    buyer_account_id: str
    invoice_id: str = Field(description="The invoice compared; ahead of the bill run (basis `rated_charges`), the id it will have.")
    invoice_number: str | None = Field(description="null until the invoice is issued.")
    previous_invoice_id: str | None = Field(description="The buyer's previous invoice; null for its first.")
    previous_invoice_number: str | None
    period_start: date
    period_end: date
    currency: str
    this_period_total: DecimalText
    last_period_total: DecimalText
    difference: DecimalText = Field(description="this_period_total − last_period_total.")
    rows: list[ComparisonRow]
    basis: Literal["invoice", "rated_charges"] = Field(
        description="rated_charges: made ahead of the invoice from the period's charges as rated; invoice: from the issued invoice's lines."
    )
    invoice_expected_on: date | None = Field(description="For basis rated_charges: the day the invoice is expected; else null.")


class ComparisonReportList(BaseModel):
    """The seller's comparison reports (a key restricted to one account: that account's only)."""

    items: list[ComparisonReportOut]
