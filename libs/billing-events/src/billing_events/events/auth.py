"""Events about API keys, published by the operator CLI (`billing keys issue|revoke`).

They carry the key's id, tenant, scope and the SHA-256 of its secret, never the secret or the
whole key: every service folds this topic into memory to verify keys without calling anyone."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from billing_events import topics
from billing_events.envelope import EventData

Scope = Literal["read", "write", "admin"]


class ApiKeyIssued(EventData):
    event_type: ClassVar[str] = "billing.api_key.issued.v1"
    topic: ClassVar[topics.Topic] = topics.AUTH

    key_id: str
    tenant: str
    scope: Scope
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str | None = None
    issued_at: AwareDatetime
    account_id: str | None = Field(
        default=None, description="The one billing account the key may see (an end customer's portal session); absent: the whole tenant."
    )

    def partition_key(self) -> str:
        return self.key_id


class ApiKeyRevoked(EventData):
    event_type: ClassVar[str] = "billing.api_key.revoked.v1"
    topic: ClassVar[topics.Topic] = topics.AUTH

    key_id: str
    tenant: str
    reason: str | None = None
    revoked_at: AwareDatetime

    def partition_key(self) -> str:
        return self.key_id
