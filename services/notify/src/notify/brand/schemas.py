"""API models of the brand endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_runtime.bank import Bic, Iban

EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+$"
# No control characters: the name goes into a From header.
HEADER_TEXT = r"^[^\x00-\x1f\x7f]+$"
DEFAULT_COLOR = "#1F4E79"


URL_PATTERN = r"^https?://[^\s\"'<>]+$"


class BrandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender_name: str = Field(min_length=1, max_length=100, pattern=HEADER_TEXT)
    sender_email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    logo_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\s\"'<>]+$")
    primary_color: str = Field(default=DEFAULT_COLOR, pattern=r"^#[0-9A-Fa-f]{6}$")
    footer: str | None = Field(default=None, max_length=2000)
    support_email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN, description="Whom a reader writes to with a question.")
    support_phone: str | None = Field(default=None, max_length=40, pattern=HEADER_TEXT)
    portal_url: str | None = Field(default=None, max_length=2000, pattern=URL_PATTERN, description="Where a reader signs in to see and pay invoices.")
    # Deprecated: the bank account is kept in invoicing's seller profile (PUT /v1/seller there), which
    # the PDF prints and notify's mails show. Accepted here only unchanged (a GET body sent back).
    bank_account_name: str | None = Field(
        default=None, max_length=140, pattern=HEADER_TEXT, description="Deprecated: set `bank_account_name` of invoicing's `PUT /v1/seller`."
    )
    iban: Iban | None = Field(default=None, description="Deprecated: set `iban` of invoicing's `PUT /v1/seller`.")
    bic: Bic | None = Field(default=None, description="Deprecated: set `bic` of invoicing's `PUT /v1/seller`.")


class BrandOut(BaseModel):
    tenant: str
    sender_name: str
    sender_email: str | None
    logo_url: str | None
    primary_color: str
    footer: str | None
    support_email: str | None = None
    support_phone: str | None = None
    portal_url: str | None = None
    bank_account_name: str | None = None
    iban: str | None = None
    bic: str | None = None
    bank_details_source: Literal["invoicing", "brand"] | None = Field(
        default=None,
        description="invoicing: the bank account of the seller's invoicing profile (the one place it is kept); "
        "brand: one set here before, shown until invoicing announces the seller's account.",
    )
    configured: bool = Field(description="False while the seller has not set a brand and defaults apply.")
    updated_at: datetime | None
