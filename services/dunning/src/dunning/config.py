from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    """dunning's own settings (`DUNNING_` prefix); the shared ones (DATABASE_URL, KAFKA_*,
    BILLING_CLOCK_FIXED_AT, ...) apply too."""

    model_config = SettingsConfigDict(env_prefix="DUNNING_", extra="ignore")

    evaluate_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often the background loop evaluates open cases; each step still happens once a case."
    )
    evaluate_in_background: bool = Field(default=True, description="Run the evaluation loop (off: only POST /v1/dunning/evaluate).")
