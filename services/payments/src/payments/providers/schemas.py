"""API models of provider accounts. Secrets go in, only their last characters come out."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Provider = Literal["stripe", "gocardless"]


class ProviderAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr = Field(description="Stripe secret key, or GoCardless access token")
    webhook_secret: SecretStr = Field(description="Stripe endpoint secret (whsec_...), or GoCardless webhook endpoint secret")


class ProviderAccountOut(BaseModel):
    provider: Provider
    api_key_last4: str
    webhook_secret_last4: str
    webhook_url_path: str
    updated_at: datetime
