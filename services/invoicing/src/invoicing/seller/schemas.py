"""Seller settings as the API reads and writes them."""

from __future__ import annotations

from typing import Annotated

from iso3166 import countries_by_alpha2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from billing_events import Address


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
    configured: bool = Field(description="False while the seller has never saved settings and defaults apply.")
