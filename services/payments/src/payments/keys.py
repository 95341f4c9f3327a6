"""Idempotency keys sent to the providers, derived from what is being done, so that the same
work always carries the same key (a retry after a crash or a lost answer cannot act twice)."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("0d5c3f6e-8b1a-4f0e-9c7d-2a6b4e1f3c58")


def provider_key(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def attempt_id(invoice_id: str, attempt_no: int) -> str:
    return f"{invoice_id}:{attempt_no}"
