"""How a payment method reads on the pages (the brand and mandate reference as the provider
gives them; the words around them are few and English for now, like the rest of the catalogue)."""

from __future__ import annotations

from typing import Any


def describe(method: dict[str, Any]) -> str:
    """What the customer recognises a method by: `Visa •••• 4242`, `Direct Debit · MD…`."""
    details = method.get("details") or {}
    if method["type"] == "card":
        brand = str(details.get("brand") or "card").replace("_", " ").title()
        return f"{brand} •••• {details['last4']}" if details.get("last4") else brand
    if method["type"] == "direct_debit":
        return f"Direct Debit · {method['method_ref']}" if method.get("method_ref") else "Direct Debit"
    return "Bank transfer"


def expiry(method: dict[str, Any]) -> str | None:
    details = method.get("details") or {}
    if details.get("exp_month") and details.get("exp_year"):
        return f"{int(details['exp_month']):02d}/{details['exp_year']}"
    return None
