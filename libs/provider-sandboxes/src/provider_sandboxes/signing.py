"""Webhook signatures, computed exactly as the providers compute them."""

from __future__ import annotations

import hashlib
import hmac
import time


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header: `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def gocardless_signature(payload: bytes, secret: str) -> str:
    """The `Webhook-Signature` header: hex HMAC-SHA256 of the raw body with the endpoint secret."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
