from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_INGEST_", extra="ignore")

    max_batch: int = 1000
    # Partners stream usage: the per-request limit is raised here (a 10-record POST is a request
    # like a 1,000-record one) and the create-only batch endpoints charge a records budget instead.
    rate_limit_per_second: float = Field(default=1000.0, gt=0, validation_alias=AliasChoices("USAGE_INGEST_RATE_LIMIT_PER_SECOND", "RATE_LIMIT_PER_SECOND"))
    rate_limit_burst: int = Field(default=2000, ge=1, validation_alias=AliasChoices("USAGE_INGEST_RATE_LIMIT_BURST", "RATE_LIMIT_BURST"))
    records_per_second: float = Field(default=50_000.0, gt=0, description="Records a second per API key on /v1/usage, /v1/quantities, /v1/orders.")
    records_burst: int = Field(default=100_000, ge=1000, description="Records a key may post at once above its rate (at least one full batch).")
    # A quantity observation may list up to 100,000 items (ids and states): /v1/quantities takes
    # bodies up to 16 MB; every other route the default BODY_LIMIT_BYTES (1 MB: 1,000 usage records
    # are about 200 kB).
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"/v1/quantities": 16_000_000},
        validation_alias=AliasChoices("BODY_LIMITS"),
        description="Per path prefix body limits (JSON).",
    )
