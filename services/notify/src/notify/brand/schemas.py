"""API models of the brand endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+$"
# No control characters: the name goes into a From header.
HEADER_TEXT = r"^[^\x00-\x1f\x7f]+$"
DEFAULT_COLOR = "#1F4E79"


class BrandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender_name: str = Field(min_length=1, max_length=100, pattern=HEADER_TEXT)
    sender_email: str | None = Field(default=None, max_length=254, pattern=EMAIL_PATTERN)
    logo_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\s\"'<>]+$")
    primary_color: str = Field(default=DEFAULT_COLOR, pattern=r"^#[0-9A-Fa-f]{6}$")
    footer: str | None = Field(default=None, max_length=2000)


class BrandOut(BaseModel):
    tenant: str
    sender_name: str
    sender_email: str | None
    logo_url: str | None
    primary_color: str
    footer: str | None
    configured: bool = Field(description="False while the seller has not set a brand and defaults apply.")
    updated_at: datetime | None
