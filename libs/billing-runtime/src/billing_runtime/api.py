"""HTTP helpers every service's endpoints share."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from billing_runtime.auth import TENANT_PATTERN, Forbidden, Principal, Scope
from billing_runtime.errors import BillingError, NotFound, Unauthorized
from billing_runtime.service import ServiceRuntime, SettingsT

DISTRIBUTOR = "distributor"
T = TypeVar("T")
K = TypeVar("K")


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer bk_live_<key id>_<secret>`.")


def principal(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> Principal:
    """The caller, as `install_http_conventions` authenticated it: from the API key (`AUTH_MODE=api_key`)
    or from a trusted gateway's `X-Tenant-Id` (`AUTH_MODE=trusted_header`). Never from the path or body."""
    state = request.scope.get("state", {})
    if "principal" in state:
        found: Principal | None = state["principal"]
    elif request.app.state.runtime.settings.auth_mode == "trusted_header":
        found = _trusted_header(request.headers.get("x-tenant-id"))
    else:
        # API keys are required but nothing verified them: refuse rather than trust a header.
        raise Unauthorized("this service does not verify API keys (install_http_conventions is missing)", code="api_key_verification_unavailable")
    if found is None:
        raise nobody_named(trusted_header=request.app.state.runtime.settings.auth_mode == "trusted_header")
    found.require(declared_scope(request.scope.get("route")) or ("read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"))
    if found.account_id is not None and not serves_one_account(request.scope.get("route")):
        raise account_restricted()
    return found


def nobody_named(*, trusted_header: bool) -> Unauthorized:
    """The refusal of a request that names no caller (no API key; behind a gateway, no X-Tenant-Id)."""
    if trusted_header:
        return Unauthorized("X-Tenant-Id header is required", code="tenant_required")
    return Unauthorized("send your API key as `Authorization: Bearer bk_live_...`", code="api_key_required")


def account_restricted() -> Forbidden:
    return Forbidden("this key may see one billing account; this route is not open to it", code="account_restricted")


def _trusted_header(x_tenant_id: str | None) -> Principal | None:
    if not x_tenant_id:
        return None
    if not TENANT_PATTERN.match(x_tenant_id):
        raise Unauthorized("X-Tenant-Id must be lowercase letters, digits and dashes", code="tenant_invalid")
    return Principal(tenant=x_tenant_id, key_id="gateway", scope="admin")


def tenant_id(caller: Annotated[Principal, Depends(principal)]) -> str:
    """The calling partner (or `distributor`): the tenant of the caller's API key."""
    return caller.tenant


def admin_tenant_id(caller: Annotated[Principal, Depends(principal)]) -> str:
    """As `tenant_id`, for endpoints that need a key with the `admin` scope."""
    caller.require("admin")
    return caller.tenant


class RequireScope:
    """A route's scope, declared next to it: `@router.put(..., dependencies=[Admin])`.

    The conventions middleware reads it from the matched route and refuses a key without it (403
    `insufficient_scope`) before the body is read; as a dependency it checks again, so the rule
    holds even for an app without the middleware. See the scope matrix in the runtime's README."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def __call__(self, caller: Annotated[Principal, Depends(principal)]) -> None:
        caller.require(self.scope)

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


class ServesOneAccount:
    """A route open to keys restricted to one billing account: `dependencies=[Read, ForAccount]`.

    Any other route refuses such a key (403 `account_restricted`, in the middleware and again in
    `principal`). A route that declares it must scope what it reads to `OwnAccount` (or check a path
    account with `own_account`), so another account's ids answer 404."""

    def __call__(self) -> None:
        return None

    def __repr__(self) -> str:
        return "ServesOneAccount()"


ForAccount = Depends(ServesOneAccount())


def serves_one_account(route: Any) -> bool:
    return any(isinstance(d.dependency, ServesOneAccount) for d in getattr(route, "dependencies", ()))


def account_restriction(caller: Annotated[Principal, Depends(principal)]) -> str | None:
    """The one account the caller's key may see; None for a tenant-wide key."""
    return caller.account_id


def own_account(restriction: str | None, requested: str | None) -> str | None:
    """The account a read is scoped to: what was asked for, when the key may see it. A restricted
    key asking for nothing gets its own account; asking for another one is a 404, as for an
    account that does not exist."""
    if restriction is None or requested is None or requested == restriction:
        return restriction if requested is None else requested
    raise NotFound(f"no account {requested!r}", code="account_not_found")


Read = Depends(RequireScope("read"))
Write = Depends(RequireScope("write"))
Admin = Depends(RequireScope("admin"))


def declared_scope(route: Any) -> Scope | None:
    """The scope a route declares with `Read` / `Write` / `Admin` (None when it declares none)."""
    for dependency in getattr(route, "dependencies", ()):
        if isinstance(dependency.dependency, RequireScope):
            return dependency.dependency.scope
    return None


Runtime = Annotated[ServiceRuntime[SettingsT], Depends(get_runtime)]
"""The app's runtime; `Runtime[Settings]` where an endpoint reads the service's own settings."""
Caller = Annotated[Principal, Depends(principal)]
Tenant = Annotated[str, Depends(tenant_id)]
AdminTenant = Annotated[str, Depends(admin_tenant_id)]
OwnAccount = Annotated[str | None, Depends(account_restriction)]


def page(items: list[Any], limit: int, next_cursor: str | None) -> dict[str, Any]:
    """The one pagination shape: `{"items": [...], "next_cursor": "..." | null}`."""
    return {"items": items, "limit": limit, "next_cursor": next_cursor}


class Page(BaseModel, Generic[T]):
    """The one pagination shape as a response model: a route's `class InvoicePage(Page[InvoiceSummary])`
    names it in the OpenAPI with every field of its items."""

    items: list[T]
    limit: int
    next_cursor: str | None = Field(default=None, description="Pass as the route's cursor (`cursor` or `after`) for the next page; null on the last page.")


class LimitTooLarge(BillingError):
    status_code = 422
    code = "limit_too_large"


def checked_limit(limit: int, maximum: int) -> int:
    """A page size the caller asked for, refused (never silently clamped) above the route's maximum."""
    if limit > maximum:
        raise LimitTooLarge(f"limit must be at most {maximum}", field="limit")
    return limit


class InvalidCursor(BillingError):
    status_code = 422
    code = "invalid_cursor"


def encode_cursor(*parts: str) -> str:
    """An opaque keyset cursor: the sort key of the last item, as base64url JSON."""
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The parts of a cursor made by `encode_cursor`; a cursor of another shape is a 422."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidCursor("cursor is not one this API returned", field="cursor") from exc
    if not isinstance(parts, list) or len(parts) != size or not all(isinstance(p, str) for p in parts):
        raise InvalidCursor("cursor is not one this API returned", field="cursor")
    return parts


def decode_keyset(cursor: str | None, parse: Callable[[str], K]) -> tuple[K, str] | None:
    """The keyset `(sort value, id)` of a cursor made by `encode_cursor(value, id)`, the value read
    back by `parse` (`date.fromisoformat`, `str`); None without a cursor; any other cursor is a 422."""
    if cursor is None:
        return None
    value, last_id = decode_cursor(cursor, 2)
    try:
        return parse(value), last_id
    except ValueError as exc:
        raise InvalidCursor("cursor is not one this API returned", field="cursor") from exc


def page_of(rows: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> tuple[list[T], str | None]:
    """A page of a keyset listing whose query fetched `limit + 1` rows (the one past the page
    says another follows, without a count): the first `limit` rows, and the next page's cursor,
    `cursor_of` the page's last row (`encode_cursor(value, id)`), or None on the last page."""
    page = list(rows[:limit])
    return page, cursor_of(page[-1]) if len(rows) > limit else None
