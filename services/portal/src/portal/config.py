from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="PORTAL_", extra="ignore")

    secret_key: SecretStr | None = Field(
        default=None,
        description="32+ random bytes (hex). Sign-in link, session and CSRF tokens and the secrets of the sessions' API keys "
        "are derived from it; every instance needs the same. Unset: a random one per process (sessions end at restart).",
    )
    public_base_url: str = Field(default="http://127.0.0.1:8107", description="The portal as a browser reaches it (sign-in links).")
    invoicing_url: str = "http://127.0.0.1:8103"
    rating_url: str = "http://127.0.0.1:8102"
    dunning_url: str = "http://127.0.0.1:8105"
    notify_url: str = "http://127.0.0.1:8106"
    usage_ingest_url: str = "http://127.0.0.1:8101"
    payments_url: str = "http://127.0.0.1:8104"
    distributor_tenant: str = Field(default="distributor", description="The tenant that bills partners (their statement).")
    link_minutes: int = Field(default=15, ge=1, le=1440, description="How long a sign-in link works.")
    session_hours: int = Field(default=8, ge=1, le=720, description="How long a session lasts.")
    api_timeout: float = Field(default=30.0, gt=0, description="Seconds for one call to a service.")
    key_wait_seconds: float = Field(default=10.0, ge=0, description="How long a new session waits for the services to learn its key.")
    locale: str = Field(default="en", description="Locale for amounts and dates when the browser asks for none we have.")
