"""One error base class with a stable code, rendered as RFC 9457 problem+json by one handler.

Raised the same way by endpoints and consumers: an endpoint's becomes the problem+json answer; a
consumer's dead-letters the event with the code in the `dlq_code` header and the inbox row's
`error_code` (billing_runtime.inbox)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class BillingError(Exception):
    """An expected failure a caller can act on: a stable `code` (never changes), an HTTP `status`
    and a `message`. Subclass per case."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.field = field
        self.extra = extra

    @property
    def status(self) -> int:
        return self.status_code


class Unprocessable(BillingError):
    """Well-formed input that a rule refuses (an event's data, a preview's lines)."""

    status_code = 422
    code = "unprocessable"


class NotFound(BillingError):
    status_code = 404
    code = "not_found"


class Conflict(BillingError):
    status_code = 409
    code = "conflict"


class Unauthorized(BillingError):
    status_code = 401
    code = "unauthorized"


def problem(status: int, code: str, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://billing.example/problems/{code}", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BillingError)
    async def _billing_error(request: Request, exc: BillingError) -> JSONResponse:
        return problem(exc.status_code, exc.code, exc.message, field=exc.field, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "code": err.get("type"), "message": err.get("msg")} for err in exc.errors()
        ]
        return problem(422, "validation_error", "The request is malformed", "See `errors` for each problem.", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "Internal error", "This is a bug; it has been logged.")
