from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_INGEST_", extra="ignore")

    max_batch: int = 1000
