"""Deterministic identifiers every service can compute from a partner's own ids."""

from __future__ import annotations

import uuid

# Fixed namespace: changing it would change every account id ever issued.
_NAMESPACE = uuid.UUID("6f0b9d1e-3c1a-5b7e-9a43-0c2d4e8f1a57")


def account_id(tenant: str, external_id: str) -> str:
    """The billing account id of a partner's customer, stable across services and replays."""
    return str(uuid.uuid5(_NAMESPACE, f"account:{tenant}:{external_id}"))


def subscription_id(tenant: str, order_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"subscription:{tenant}:{order_id}"))


def derived_event_id(*parts: str) -> str:
    """An event id derived from what caused it, so re-deriving the event yields the same id."""
    return str(uuid.uuid5(_NAMESPACE, "event:" + ":".join(parts)))
