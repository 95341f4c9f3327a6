from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_INGEST_", extra="ignore")

    max_batch: int = 1000
    # A quantity observation may list up to 100,000 items (ids and states): /v1/quantities takes
    # bodies up to 16 MB; every other route the default BODY_LIMIT_BYTES (1 MB: 1,000 usage records
    # are about 200 kB).
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"/v1/quantities": 16_000_000},
        validation_alias=AliasChoices("BODY_LIMITS"),
        description="Per path prefix body limits (JSON).",
    )
