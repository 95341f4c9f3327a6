"""API models of imported statements."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel

from billing_events import DecimalStr
from billing_runtime.api import Page


class StatementLineOut(BaseModel):
    statement_id: str
    line_no: int
    booked_on: date
    amount: DecimalStr
    currency: str
    remittance: str | None
    counterparty: str | None
    status: Literal["matched", "unmatched"]
    matched_by: Literal["reference", "amount_and_buyer"] | None
    invoice_id: str | None
    payment_id: str | None


class StatementOut(BaseModel):
    statement_id: str
    format: str
    account: str | None
    matched: int
    unmatched: int
    lines: list[StatementLineOut]


class UnmatchedPage(Page[StatementLineOut]):
    """Every bank statement line not matched to an invoice, oldest booking first (one page: `next_cursor` is null)."""
