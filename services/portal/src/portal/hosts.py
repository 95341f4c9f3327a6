"""A partner's portal at its own host name (`https://billing.acme.example/`).

- **The mapping** (`portal_host`: host → tenant, one host per tenant, first come) is set by the
  partner with its admin key: `PUT /v1/portal/host {"host": …}`, read with `GET`, removed with
  `DELETE`. Setting it also keeps the partner's brand as notify shows it to that key, so the host's
  sign-in page is in the partner's brand before anyone has signed in.
- **On a mapped host** the middleware serves that one tenant's portal at the root: `/`, `/account`,
  `/sign-in/<token>` are the pages of `/p/<tenant>/…`; `/p/<tenant>/…` itself works too (the
  pages' links), and `/p/<any other tenant>/…` is a 404, so a partner's host shows no one else.
  Sign-in links mailed to the tenant's users point at the host (scheme and port as in
  `PORTAL_PUBLIC_BASE_URL`). Session cookies there are host-only with path `/`.
- **A session is accepted only at the host where it was opened** (`portal_session.host`, NULL on
  the portal's own address): a cookie carried from one host to another, or to `/p/<tenant>/` on the
  portal's own address, signs no one in."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from billing_runtime.api import Admin, Read, Runtime, Tenant
from billing_runtime.errors import BillingError, Conflict, NotFound
from portal import db
from portal.brands import Brand
from portal.config import Settings

HOST_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$"
_HOST = re.compile(HOST_PATTERN)
_IPV4 = re.compile(r"^[0-9.]+$")
# Paths that are the same on every host: assets, the API, health and docs.
SHARED_PREFIXES = ("/static/", "/v1/", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics")
REFRESH_SECONDS = 10.0
STATE_HOST = "portal_host"

HOST_REQUESTS = Counter("portal_host_requests_total", "Requests to partners' own host names, by outcome", ["outcome"])

router = APIRouter(prefix="/v1/portal", tags=["portal"])


class HostTaken(Conflict):
    code = "host_taken"


class HostReserved(BillingError):
    status_code = 422
    code = "host_reserved"


def normalise(raw: str | None) -> str | None:
    """A Host header as the mapping keys it: lower case, without port or trailing dot."""
    if not raw:
        return None
    host = raw.strip().lower()
    if host.startswith("["):  # an IPv6 literal is never a partner's host
        return None
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


class HostMap:
    """host → tenant (and back), read from the table at most every REFRESH_SECONDS, and at once
    after this instance changed it."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.by_host: dict[str, str] = {}
        self.by_tenant: dict[str, str] = {}
        self._loaded_at = -REFRESH_SECONDS

    def invalidate(self) -> None:
        self._loaded_at = -REFRESH_SECONDS

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at < REFRESH_SECONDS:
            return
        async with self.runtime.sessions() as session:
            rows = (await session.execute(select(db.host.c.host, db.host.c.tenant))).all()
        self.by_host = {r.host: r.tenant for r in rows}
        self.by_tenant = {r.tenant: r.host for r in rows}
        self._loaded_at = time.monotonic()

    async def tenant_of(self, host: str | None) -> str | None:
        await self._fresh()
        return self.by_host.get(host) if host else None

    async def host_of(self, tenant: str) -> str | None:
        await self._fresh()
        return self.by_tenant.get(tenant)


def request_host(request: Request) -> str | None:
    """The partner's host this request came in on; None on the portal's own address."""
    host: str | None = request.scope.get("state", {}).get(STATE_HOST)
    return host


def cookie_path(request: Request, partner: str) -> str:
    return "/" if request_host(request) else f"/p/{partner}"


async def portal_url(request_or_app: Any, tenant: str) -> str:
    """Where `tenant`'s portal is for its users: its own host when it has one, else `/p/<tenant>` on
    the portal's public address."""
    app = getattr(request_or_app, "app", request_or_app)
    settings = app.state.runtime.settings
    base = settings.public_base_url.rstrip("/")
    host = await app.state.hosts.host_of(tenant)
    if host is None:
        return f"{base}/p/{tenant}"
    parts = urlsplit(base)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class PortalHosts:
    """ASGI middleware: a request on a partner's own host is that partner's portal, and only its."""

    def __init__(self, app: ASGIApp, *, hosts: HostMap, brands: Any) -> None:
        self.app = app
        self.hosts = hosts
        self.brands = brands

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = normalise(headers.get(b"host", b"").decode("latin-1"))
        tenant = await self.hosts.tenant_of(host)
        path: str = scope["path"]
        if tenant is None:
            if path.startswith("/p/"):
                await self.brands.warm(path.split("/")[2])
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_HOST] = host
        if path.startswith("/p/"):
            if path.split("/")[2] != tenant:
                HOST_REQUESTS.labels("other_tenant").inc()
                await Response("Not found", status_code=404, media_type="text/plain")(scope, receive, send)
                return
        elif not path.startswith(SHARED_PREFIXES):
            path = f"/p/{tenant}{path}"
            scope["path"], scope["raw_path"] = path, path.encode()
        HOST_REQUESTS.labels("served").inc()
        await self.brands.warm(tenant)
        await self.app(scope, receive, send)


# --- the partner's API -------------------------------------------------------------------------


class HostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(pattern=HOST_PATTERN, min_length=4, max_length=253, description="The partner's host name, lower case, e.g. `billing.acme.example`.")


class HostOut(BaseModel):
    host: str
    tenant: str
    portal_url: str = Field(description="The portal's address on that host, as sign-in links will name it.")


async def _row(session: AsyncSession, tenant: str) -> Any:
    return (await session.execute(select(db.host).where(db.host.c.tenant == tenant))).first()


@router.put("/host", dependencies=[Admin], response_model=HostOut)
async def put_host(body: HostIn, request: Request, tenant: Tenant, runtime: Runtime[Settings]) -> HostOut:
    """Serve the partner's portal at its own host name (point its DNS at the portal first). The
    partner's brand is read from notify with this key, for the pages before sign-in."""
    host = body.host
    own = normalise(urlsplit(runtime.settings.public_base_url).netloc)
    if host == own or _IPV4.match(host) or host.endswith(".invalid"):
        raise HostReserved(f"{host!r} cannot be a partner's host", field="host")
    async with runtime.transaction() as session:
        taken = (await session.execute(select(db.host.c.tenant).where(db.host.c.host == host))).scalar()
        if taken is not None and taken != tenant:
            raise HostTaken(f"host {host!r} is another portal's", field="host")
        await session.execute(delete(db.host).where(db.host.c.tenant == tenant, db.host.c.host != host))
        await session.execute(pg_insert(db.host).values(host=host, tenant=tenant, created_at=runtime.clock.now()).on_conflict_do_nothing())
    app = request.app
    app.state.hosts.invalidate()
    key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    try:
        brand = await app.state.services.json("notify", "/v1/brand", key)
        await app.state.brands.remember(tenant, Brand.from_notify(brand))
    except BillingError:
        pass  # notify unreachable or brand unreadable: the pages learn it at the first sign-in
    return HostOut(host=host, tenant=tenant, portal_url=await portal_url(app, tenant))


@router.get("/host", dependencies=[Read], response_model=HostOut)
async def get_host(request: Request, tenant: Tenant, runtime: Runtime) -> HostOut:
    async with runtime.sessions() as session:
        row = await _row(session, tenant)
    if row is None:
        raise NotFound("the portal has no host name of its own", code="host_not_set")
    return HostOut(host=row.host, tenant=tenant, portal_url=await portal_url(request.app, tenant))


@router.delete("/host", dependencies=[Admin], status_code=204)
async def delete_host(request: Request, tenant: Tenant, runtime: Runtime) -> Response:
    """Stop serving the portal at the partner's host (sessions opened there stop working)."""
    async with runtime.transaction() as session:
        await session.execute(delete(db.host).where(db.host.c.tenant == tenant))
    request.app.state.hosts.invalidate()
    return Response(status_code=204)
