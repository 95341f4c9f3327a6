from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INVOICING_", extra="ignore")

    default_due_net_days: int = Field(default=30, ge=0, le=365, description="Due rule of a seller that never set one.")
    distributor_id: str = Field(
        default="distributor",
        description="The distributor's tenant: the one seller whose wholesale previews may name a partner (its seller profile is the buyer).",
    )
    max_page_size: int = Field(default=200, ge=1, le=1000)
    vies_url: str | None = Field(default=None, description="VIES check-vat-number endpoint; unset: VAT numbers are checked offline only.")
    vies_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    public_base_url: str | None = Field(
        default=None,
        description="Invoicing's address as buyers reach it (https://billing.example.com/invoicing): makes the shared document "
        "links in events and emails absolute. Unset: they are relative to invoicing.",
    )
    vies_requester_vat_id: str | None = Field(default=None, description="Our own VAT number, sent to VIES so that its answer carries a consultation number.")
