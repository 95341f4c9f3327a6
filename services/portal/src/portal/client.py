"""The portal's calls to the services: each with the signed-in session's own API key, never another.

A new session's keys reach the services through the key topic within moments; until one has, it
answers 401 `api_key_invalid`, and the call is retried for up to `key_wait_seconds`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from billing_runtime.errors import BillingError

tracer = trace.get_tracer(__name__)
CALLS = Counter("portal_service_calls_total", "Calls to the services, by service and status class", ["service", "status"])
CALL_SECONDS = Histogram("portal_service_call_seconds", "Time of one call to a service", ["service"])


class ServiceRefused(BillingError):
    """A service said no: its status (404, 403) is the page's."""


class ServiceUnavailable(BillingError):
    status_code = 502
    code = "service_unavailable"


class ServiceInvalid(ServiceRefused):
    """A service refused what a form sent (422): its stable `code` and `field`, for the form to show."""

    status_code = 422


class Services:
    def __init__(self, urls: dict[str, str], *, timeout: float, key_wait_seconds: float) -> None:
        self.urls = urls
        self.http = httpx.AsyncClient(timeout=timeout)
        self.key_wait_seconds = key_wait_seconds

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        service: str,
        path: str,
        key: str,
        params: dict[str, Any] | None = None,
        *,
        method: str = "GET",
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One call (GET unless `method` says otherwise; a write carries its own `Idempotency-Key` in `headers`)."""
        deadline = time.monotonic() + self.key_wait_seconds
        with tracer.start_as_current_span(f"portal call {service}", attributes={"http.route": path}), CALL_SECONDS.labels(service).time():
            while True:
                try:
                    r = await self.http.request(
                        method, self.urls[service] + path, params=params, json=json, headers={**(headers or {}), "Authorization": f"Bearer {key}"}
                    )
                except httpx.HTTPError as exc:
                    CALLS.labels(service, "error").inc()
                    raise ServiceUnavailable(f"{service} did not answer") from exc
                if r.status_code == 401 and _code(r) == "api_key_invalid" and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    continue
                CALLS.labels(service, f"{r.status_code // 100}xx").inc()
                if r.status_code == 422 and method != "GET":
                    problem = r.json()
                    first = (problem.get("errors") or [{}])[0]  # a validation_error names its fields in `errors`
                    field = problem.get("field") or str(first.get("field") or "").split(".")[0] or None
                    CALLS.labels(service, "4xx").inc()
                    raise ServiceInvalid(problem.get("title") or "refused", code=problem.get("code"), field=field)
                if r.status_code >= 400:
                    code = _code(r) or "service_error"
                    status = r.status_code if r.status_code in (401, 403, 404, 409, 410, 422) else 502
                    raise ServiceRefused(f"{service} answered {r.status_code} ({code})", code=code, status_code=status, field=_field(r))
                return r

    async def json(self, service: str, path: str, key: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return (await self.request(service, path, key, params, **kwargs)).json()

    async def send(self, method: str, service: str, path: str, key: str, body: Any = None) -> Any:
        """A write on the session's behalf (the services decide whether its key may)."""
        return (await self.request(service, path, key, method=method, json=body)).json()


def _field(r: httpx.Response) -> str | None:
    """The field a 422 names (the first error's), for the form to show next to it."""
    try:
        body = r.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    errors = body.get("errors") or []
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        loc = errors[0].get("loc") or errors[0].get("field")
        return str(loc[-1]) if isinstance(loc, list) and loc else (str(loc) if loc else None)
    field = body.get("field")
    return str(field) if field else None


def _code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
