"""Tax answers as the API shows them. Money is a decimal string with the currency's minor digits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from billing_events.money import DecimalText


class OssRow(BaseModel):
    """The B2C supplies of one member state, rate and currency in the quarter."""

    country: str = Field(description="The member state of consumption.")
    rate: DecimalText = Field(description="The VAT rate in percent.")
    currency: str
    taxable: DecimalText
    tax: DecimalText
    invoices: int = Field(description="How many invoices the row adds up.")


class OssReport(BaseModel):
    """The seller's One-Stop-Shop return for a quarter."""

    seller_id: str
    quarter: str = Field(description="e.g. 2026-Q4.")
    issued_from: date = Field(description="The first day of the quarter (invoices issued on or after).")
    issued_until: date = Field(description="The first day of the next quarter (invoices issued before).")
    rows: list[OssRow]


class VatCheckOut(BaseModel):
    """One check of a buyer's VAT number, kept as evidence."""

    check_id: str
    account_id: str
    revision: int = Field(description="The buyer's revision whose VAT number was checked.")
    vat_id: str
    checksum_valid: bool
    checksum_reason: str | None = Field(description="Why the checksum failed; null when it passed.")
    vies_outcome: Literal["valid", "invalid", "unavailable"] | None = Field(description="VIES's answer; null when VIES was not asked.")
    vies_request_identifier: str | None = Field(description="VIES's consultation number (the proof of the check).")
    vies_response: dict[str, Any] | None = Field(description="VIES's answer as received.")
    checked_at: datetime


class VatChecks(BaseModel):
    """A buyer's VAT number as it stands, and every check made of it."""

    account_id: str
    vat_id: str | None
    vat_id_valid: bool
    note: str | None = Field(description="Why the VAT number is not taken as valid, if it is not.")
    checks: list[VatCheckOut]
