"""Settings every service shares. Same environment variable names in every run mode."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """Base of every service's Settings. Subclasses add their own fields under an env prefix;
    the shared fields below keep their unprefixed names (aliases are not prefixed)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/billing", validation_alias=_env("DATABASE_URL"))
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:19092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"))
    kafka_enable_idempotence: bool = Field(default=False, validation_alias=_env("KAFKA_ENABLE_IDEMPOTENCE"))
    kafka_topic_replication: int = Field(default=1, validation_alias=_env("KAFKA_TOPIC_REPLICATION"))
    kafka_compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = Field(
        default="zstd",
        validation_alias=_env("KAFKA_COMPRESSION"),
        description="Compression of the batches the producers send. zstd packs as tightly as gzip at a third of its CPU "
        "(aiokafka's gzip is level 9: 6 µs a usage event against 1.8 µs); codecs other than gzip come from cramjam.",
    )
    outbox_retention_days: int = Field(default=7, validation_alias=_env("OUTBOX_RETENTION_DAYS"))
    outbox_poll_ms: int = Field(default=50, validation_alias=_env("OUTBOX_POLL_MS"))
    consumer_max_attempts: int = Field(default=3, validation_alias=_env("CONSUMER_MAX_ATTEMPTS"))
    consumer_max_batch: int = Field(
        default=1000,
        ge=1,
        validation_alias=_env("CONSUMER_MAX_BATCH"),
        description="Most messages a consumer polls at once; each partition's share is applied in one transaction.",
    )
    consumer_max_partition_fetch_bytes: int = Field(
        default=262_144,
        ge=1024,
        validation_alias=_env("CONSUMER_MAX_PARTITION_FETCH_BYTES"),
        description="Most bytes (as sent, compressed) a consumer fetches from one partition at a time; a larger "
        "message still comes whole. CONSUMER_MAX_BATCH counts messages, and a batch message of usage carries up "
        "to 1,000 events: this is what bounds a poll's memory then. 256 KiB kept rating under 200 MB draining a "
        "backlog of batch messages (1 MiB, aiokafka's default: 228 MB) at the same speed.",
    )
    consumer_max_batch_bytes: int = Field(
        default=1_048_576,
        ge=1,
        validation_alias=_env("CONSUMER_MAX_BATCH_BYTES"),
        description="Most bytes of message values applied (decoded whole) in one transaction: a partition's polled "
        "messages are applied in consecutive runs of at most this many bytes (and CONSUMER_MAX_BATCH messages), each "
        "its own transaction and offset commit; a message larger than this is applied alone. 1 MiB keeps 1,000 "
        "events of up to 1 kB together and takes a month close's PeriodClosed (about 10 kB with 20 lines, "
        "57 kB once decoded) about 100 at a time.",
    )
    consumer_concurrency: int = Field(
        default=1,
        ge=1,
        validation_alias=_env("CONSUMER_CONCURRENCY"),
        description="How many partitions' batches a consumer applies at the same time (each in its own transaction, "
        "each partition still in order). Above 1 only for handlers whose events of different partitions touch "
        "different rows, else they wait on each other's locks.",
    )
    consumer_session_timeout_ms: int = Field(
        default=10000,
        validation_alias=_env("CONSUMER_SESSION_TIMEOUT_MS"),
        description="How soon a consumer that stopped heartbeating loses its partitions to another. Too short and a "
        "busy process (a long PDF render on a loaded machine) is expelled and has to rejoin. Tansu answers a "
        "JoinGroup after half of it, so a starting consumer gets its partitions that much later.",
    )
    consumer_group_prefix: str = Field(
        default="",
        validation_alias=_env("CONSUMER_GROUP_PREFIX"),
        description="Put before each service's consumer group name (the group is `<prefix><service>`), so two "
        "environments can share one cluster. The test plugin gives every test its own prefix.",
    )
    consumer_auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        validation_alias=_env("CONSUMER_AUTO_OFFSET_RESET"),
        description="Where a consumer group with no committed offset starts. `earliest` (never skip an event) outside tests.",
    )
    consumer_lag_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        validation_alias=_env("CONSUMER_LAG_INTERVAL_SECONDS"),
        description="How often a consumer measures its lag (`billing_consumer_lag`) from the outboxes and its inbox.",
    )
    clock_fixed_at: datetime | None = Field(
        default=None,
        validation_alias=_env("BILLING_CLOCK_FIXED_AT"),
        description="Freeze now() at this instant (tests and demos).",
    )
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    log_level: str = Field(default="INFO", validation_alias=_env("LOG_LEVEL"))
    auth_mode: Literal["api_key", "trusted_header"] = Field(
        default="api_key",
        validation_alias=_env("AUTH_MODE"),
        description="`api_key`: callers present `Authorization: Bearer bk_live_...`, verified against the keys folded from "
        "the `billing.auth` topic. `trusted_header`: an authenticating gateway in front names the tenant in `X-Tenant-Id`.",
    )
    rate_limit_per_second: float = Field(default=50.0, gt=0, validation_alias=_env("RATE_LIMIT_PER_SECOND"))
    rate_limit_burst: int = Field(default=200, ge=1, validation_alias=_env("RATE_LIMIT_BURST"))
    api_keys_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias=_env("API_KEYS_REFRESH_SECONDS"),
        description="How often a service reloads the API key table (`billing_auth.api_key`, the registry's source of truth). "
        "The `billing.auth` topic brings changes at once; this catches what the topic lost.",
    )
    body_limit_bytes: int = Field(
        default=1_000_000, ge=1, validation_alias=_env("BODY_LIMIT_BYTES"), description="Largest request body, checked before it is read (413)."
    )
    body_limits: dict[str, int] = Field(
        default_factory=dict,
        validation_alias=_env("BODY_LIMITS"),
        description='Per path prefix, a body limit other than BODY_LIMIT_BYTES, as JSON: `{"/v1/bank-statements": 20000000}`. '
        "The longest matching prefix wins.",
    )
    public_rate_limit_per_second: float = Field(
        default=10.0,
        gt=0,
        validation_alias=_env("PUBLIC_RATE_LIMIT_PER_SECOND"),
        description="Before authentication, per client address: requests to shared links (`/v1/shared/`) and provider webhooks.",
    )
    public_rate_limit_burst: int = Field(default=100, ge=1, validation_alias=_env("PUBLIC_RATE_LIMIT_BURST"))
    public_rate_limit_exempt: list[str] = Field(
        default_factory=list,
        validation_alias=_env("PUBLIC_RATE_LIMIT_EXEMPT"),
        description='Client addresses (JSON list of CIDRs: `["10.42.0.0/16"]`) the per-address limit on shared links and webhooks '
        "does not apply to: the platform's own callers, as notify fetching the PDFs it attaches through their shared links "
        "(a month close's thousands of documents from one address). Empty: every address is limited.",
    )
    auth_failure_rate_limit_per_second: float = Field(
        default=1.0,
        gt=0,
        validation_alias=_env("AUTH_FAILURE_RATE_LIMIT_PER_SECOND"),
        description="Per client address: refused API keys allowed (after the burst), before every request from it is 429.",
    )
    auth_failure_rate_limit_burst: int = Field(default=100, ge=1, validation_alias=_env("AUTH_FAILURE_RATE_LIMIT_BURST"))
    json_max_integer_digits: int = Field(
        default=15,
        ge=1,
        validation_alias=_env("JSON_MAX_INTEGER_DIGITS"),
        description="A JSON number in a request may have at most this many digits before the decimal point (422 `number_out_of_range`).",
    )
    json_max_significant_digits: int = Field(
        default=28,
        ge=1,
        validation_alias=_env("JSON_MAX_SIGNIFICANT_DIGITS"),
        description="A JSON number in a request may have at most this many significant digits (Decimal's default precision).",
    )
    idempotency_ttl_hours: int = Field(
        default=24, ge=1, validation_alias=_env("IDEMPOTENCY_TTL_HOURS"), description="How long an Idempotency-Key is remembered."
    )
    secrets_keys: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=_env("SECRETS_KEYS"),
        description='Keys sealing secrets at rest (provider credentials, webhook secrets), JSON: `{"2026-12": "<base64 of 32 bytes>"}`. '
        "Keep older keys listed while values sealed with them remain (`billing secrets rotate` moves them to the current key).",
    )
    secrets_current_key: str | None = Field(
        default=None, validation_alias=_env("SECRETS_CURRENT_KEY"), description="The id in SECRETS_KEYS that new secrets are sealed with."
    )
    secrets_dev_key_file: str | None = Field(
        default=None,
        validation_alias=_env("SECRETS_DEV_KEY_FILE"),
        description="Development only: without SECRETS_KEYS, seal with a generated key kept in this file (`billing up`, `billing demo`, "
        "the tests). Unset (production): a service that seals secrets refuses to start without SECRETS_KEYS.",
    )
