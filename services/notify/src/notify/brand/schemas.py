"""API models of the brand endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError

EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+$"
# No control characters: the name goes into a From header.
HEADER_TEXT = r"^[^\x00-\x1f\x7f]+$"
DEFAULT_COLOR = "#1F4E79"


URL_PATTERN = r"^https?://[^\s\"'<>]+$"


def _iban(value: str) -> str:
    try:
        return str(stdnum_iban.compact(stdnum_iban.validate(value)))
    except ValidationError as exc:
        raise ValueError(f"not a valid IBAN: {exc}") from None


def _bic(value: str) -> str:
    try:
        return str(stdnum_bic.validate(value))
    except ValidationError as exc:
        raise ValueError(f"not a valid BIC: {exc}") from None


Iban = Annotated[str, Field(max_length=42), AfterValidator(_iban)]
Bic = Annotated[str, Field(max_length=11), AfterValidator(_bic)]


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
    bank_account_name: str | None = Field(default=None, max_length=140, pattern=HEADER_TEXT, description="The account holder a transfer is made to.")
    iban: Iban | None = Field(default=None, description="The account a transfer is made to; the mails give the invoice's RF reference with it.")
    bic: Bic | None = None


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
    configured: bool = Field(description="False while the seller has not set a brand and defaults apply.")
    updated_at: datetime | None
