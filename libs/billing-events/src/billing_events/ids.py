"""Deterministic identifiers every service can compute from a partner's own ids."""

from __future__ import annotations

import hashlib
import uuid

# Fixed namespace: changing it would change every account id ever issued.
_NAMESPACE = uuid.UUID("6f0b9d1e-3c1a-5b7e-9a43-0c2d4e8f1a57")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """`str(uuid.uuid5(_NAMESPACE, name))` without building a UUID object (three times faster; ingest
    derives one id per event). RFC 4122 version 5: SHA-1 of namespace and name, version and variant bits set."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def account_id(tenant: str, external_id: str) -> str:
    """The billing account id of a partner's customer, stable across services and replays."""
    return _uuid5(f"account:{tenant}:{external_id}")


def subscription_id(tenant: str, order_id: str) -> str:
    return _uuid5(f"subscription:{tenant}:{order_id}")


def derived_event_id(*parts: str) -> str:
    """An event id derived from what caused it, so re-deriving the event yields the same id."""
    return _uuid5("event:" + ":".join(parts))
