from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings
from billing_runtime.service import ServiceRuntime


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0, description="Seconds for one SMTP conversation.")
    sender_email: str = Field(default="billing@localhost", description="From address when a brand sets none.")
    max_attempts: int = Field(default=8, ge=1, description="SMTP attempts before a delivery is `failed`.")
    retry_backoff_seconds: float = Field(default=30.0, gt=0, description="Wait after the first failed attempt; doubles.")
    retry_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    sender_batch_size: int = Field(default=20, ge=1, le=500, description="Deliveries claimed in one statement.")
    sender_concurrency: int = Field(default=16, ge=1, le=256, description="Emails delivered at once (and SMTP connections kept open).")
    sender_poll_ms: int = Field(default=500, ge=10, description="Wait before claiming again when nothing was due.")
    smtp_idle_seconds: float = Field(default=30.0, gt=0, description="An SMTP connection idle longer is closed, not reused.")
    documents_concurrency: int = Field(default=4, ge=1, le=64, description="Documents fetched at once (invoicing renders a PDF on its first download).")
    document_cache_bytes: int = Field(default=32_000_000, ge=0, description="Fetched documents kept in memory for a few minutes, so each is fetched once.")
    attachment_timeout: float = Field(default=30.0, gt=0, description="Seconds to fetch one document to attach.")
    attachment_max_bytes: int = Field(default=20_000_000, gt=0, description="A larger document is not attached (the delivery fails).")
    webhook_timeout: float = Field(default=10.0, gt=0, description="Seconds for one webhook POST.")
    webhook_max_attempts: int = Field(default=8, ge=1, description="POST attempts before a webhook delivery is `failed`.")
    webhook_allowed_destinations: list[str] = Field(
        default_factory=list,
        description='Host names and CIDRs (JSON list: `["127.0.0.1/32", "hooks.internal"]`) a webhook may reach although private, '
        "and over http. Empty: only https to public addresses (tests, the demo and private deployments list theirs).",
    )
    webhook_concurrency: int = Field(default=8, ge=1, le=256, description="Webhook POSTs at once.")
    documents_base_url: str | None = Field(
        default=None,
        description="Where relative document URLs (invoicing's `/v1/invoices/{id}/pdf`) are fetched: invoicing's base URL. "
        "Unset: such documents are not attached (the mail still links them).",
    )


def settings_of(runtime: ServiceRuntime) -> Settings:
    """notify's own settings of a runtime `notify.main.build` made (the runtime holds them as its
    CommonSettings): what a consumer needs beyond the runtime (the default sender address)."""
    if not isinstance(runtime.settings, Settings):
        raise TypeError(f"{runtime.name} was built with {type(runtime.settings).__name__}, not notify's Settings")
    return runtime.settings
