"""The optional VIES check of a buyer's VAT number over HTTP (the Commission's REST API,
`POST …/check-vat-number`). Its answer is kept as evidence that the reverse charge was justified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from opentelemetry import trace
from prometheus_client import Counter

tracer = trace.get_tracer(__name__)
VIES_CHECKS = Counter("billing_vies_checks_total", "VIES VAT number checks", ["outcome"])


@dataclass(frozen=True)
class ViesAnswer:
    outcome: Literal["valid", "invalid", "unavailable"]
    request_identifier: str | None = None
    response: dict[str, Any] = field(default_factory=dict)


async def check_vies(url: str, vat_id: str, *, timeout: float, requester_vat_id: str | None = None) -> ViesAnswer:
    """Ask VIES whether `vat_id` (with its country prefix) is valid. Never raises: an unreachable or
    confused service is `unavailable`, and the offline checksum result then stands."""
    body: dict[str, str] = {"countryCode": vat_id[:2], "vatNumber": vat_id[2:]}
    if requester_vat_id:
        body |= {"requesterMemberStateCode": requester_vat_id[:2], "requesterNumber": requester_vat_id[2:]}
    with tracer.start_as_current_span("vies_check", attributes={"billing.vat_country": vat_id[:2]}) as span:
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.post(url, json=body)
            response.raise_for_status()
            payload = response.json()
            valid = payload["valid"]
            if not isinstance(valid, bool):
                raise ValueError("'valid' is not a boolean")
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            VIES_CHECKS.labels("unavailable").inc()
            span.set_attribute("billing.vies_outcome", "unavailable")
            return ViesAnswer("unavailable", response={"error": f"{type(exc).__name__}: {exc}"})
        outcome: Literal["valid", "invalid"] = "valid" if valid else "invalid"
        VIES_CHECKS.labels(outcome).inc()
        span.set_attribute("billing.vies_outcome", outcome)
        return ViesAnswer(outcome, payload.get("requestIdentifier") or None, payload)
