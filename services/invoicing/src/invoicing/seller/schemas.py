"""Seller settings as the API reads and writes them."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from iso3166 import countries_by_alpha2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from billing_events import Address
from billing_runtime.bank import Bic, Iban


class NetDays(BaseModel):
    """Due N days after the invoice date."""

    model_config = ConfigDict(extra="forbid")
    net_days: int = Field(ge=0, le=365)


class DayOfNextMonth(BaseModel):
    """Due on day D of the month after the invoice month (clamped to that month's last day)."""

    model_config = ConfigDict(extra="forbid")
    day_of_next_month: int = Field(ge=1, le=31)


DueRule = NetDays | DayOfNextMonth


def _iso_country(code: str) -> str:
    if code not in countries_by_alpha2:
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


LOGO_MAX_BYTES = 256 * 1024
_LOGO = re.compile(r"^data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)$")
_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


def _logo(value: str) -> str:
    """A PNG or JPEG as a data: URI, at most 256 KiB decoded, whose bytes are what it says."""
    match = _LOGO.match(value)
    if match is None:
        raise ValueError("the logo must be a data:image/png;base64,… or data:image/jpeg;base64,… URI")
    try:
        raw = base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise ValueError("the logo's base64 does not decode") from None
    if len(raw) > LOGO_MAX_BYTES:
        raise ValueError(f"the logo is {len(raw)} bytes; at most {LOGO_MAX_BYTES}")
    if not raw.startswith(_MAGIC[match.group(1)]):
        raise ValueError(f"the logo is not a {match.group(1).upper()} image")
    return value


Logo = Annotated[str, StringConstraints(max_length=LOGO_MAX_BYTES * 4 // 3 + 64), AfterValidator(_logo)]
CreditorId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{3}[A-Z0-9]{1,28}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_iso_country)]
Prefix = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{1,10}$")]


class SellerSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    country: CountryCode
    vat_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)] | None = None
    invoice_prefix: Prefix
    due_rule: DueRule
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)] | None = None
    address: Address | None = None
    registration: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)] | None = None
    brand_color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None
    logo: Logo | None = Field(default=None, description="Printed on the PDFs: a PNG or JPEG as a data: URI, at most 256 KiB.")
    iban: Iban | None = Field(default=None, description="Account buyers pay into by transfer (BT-84), printed with the RF reference.")
    bic: Bic | None = Field(default=None, description="BT-86.")
    bank_account_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=140, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = Field(
        default=None, description="The account holder (BT-85), when it is not `name`. The emails' how-to-pay shows this account too."
    )
    sepa_creditor_id: CreditorId | None = Field(default=None, description="SEPA creditor identifier (BT-90) for direct-debit invoices.")


class SellerSettingsOut(BaseModel):
    seller_id: str
    name: str
    country: str | None
    vat_id: str | None
    invoice_prefix: str
    due_rule: DueRule
    email: str | None
    address: Address | None = None
    registration: str | None = None
    brand_color: str | None = None
    logo: str | None = None
    iban: str | None = None
    bic: str | None = None
    bank_account_name: str | None = None
    sepa_creditor_id: str | None = None
    configured: bool = Field(description="False while the seller has never saved settings and defaults apply.")
