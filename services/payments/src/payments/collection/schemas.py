"""API models of a seller's collection settings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SurplusAction = Literal["refund", "credit"]


class CollectionSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    surplus: SurplusAction = Field(
        description="money a second success brings for an invoice already paid: refunded through the provider, or kept as the buyer's credit"
    )


class CollectionSettingsOut(BaseModel):
    surplus: SurplusAction
    updated_at: datetime | None
