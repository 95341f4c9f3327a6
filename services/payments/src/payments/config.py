from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    """payments' own settings (env prefix PAYMENTS_) beside the shared ones (DATABASE_URL, KAFKA_*, ...)."""

    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore")

    # Bank statements (camt.053 / MT940 files of a month) are larger than any JSON request.
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"/v1/bank-statements": 20_000_000},
        validation_alias=AliasChoices("BODY_LIMITS"),
        description="Per path prefix body limits (JSON); payments takes statement files up to 20 MB.",
    )

    # Unset: the real providers. Set: a sandbox (tests, the embedded mode); nothing else changes.
    stripe_api_base: str | None = None
    gocardless_base_url: str | None = None
    gocardless_environment: str = "live"
    provider_timeout_seconds: float = 20.0
    collector_interval_seconds: float = 1.0
    # An attempt whose outcome is unknown is first asked about after this many seconds, then after
    # twice as long each time, but at least every `reconcile_max_interval_seconds`.
    reconcile_after_seconds: float = 30.0
    reconcile_max_interval_seconds: float = 300.0
    # An attempt the provider holds undecided (a direct debit until its charge date, a card
    # `processing`) is read back this often, in case its webhook is lost.
    processing_check_seconds: float = 3600.0
