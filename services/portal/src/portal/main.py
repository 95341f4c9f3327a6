"""Composition root of the portal."""

from __future__ import annotations

import contextlib
import inspect
import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from billing_runtime.auth import ensure_registry
from billing_runtime.errors import BillingError
from billing_runtime.service import ServiceRuntime, create_app
from portal import accounts, hosts, partner_pages, payment_methods, profile, receipts, web
from portal.accounts import Secrets
from portal.api import router as api_router
from portal.brands import Brands
from portal.client import Services
from portal.config import Settings
from portal.db import metadata
from portal.i18n import N_

SERVICE = "portal"
log = logging.getLogger(__name__)


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(SERVICE, settings, metadata)
    if settings.secret_key is None:
        log.warning("PORTAL_SECRET_KEY is not set: a random one is used, and sessions end when this process stops")
        key = secrets.token_bytes(32)
    else:
        key = settings.secret_key.get_secret_value().encode()

    async def sweep() -> None:
        """End expired sessions and revoke their keys, and any brand edit's key left over."""
        async with runtime.transaction() as session:
            await accounts.end_sessions(runtime, session, why="expired")
            await partner_pages.sweep_write_keys(runtime, session)

    runtime.every("session-sweeper", 60, sweep)
    app = create_app(
        runtime,
        [api_router, hosts.router, partner_pages.router, payment_methods.router, profile.router, receipts.router, web.router],
        title="portal",
        description="The white-label portal for partners' staff and end customers; and the API that invites them.",
    )
    app.state.secrets = Secrets(key)
    app.state.new_token = lambda: secrets.token_urlsafe(32)
    app.state.brands = Brands(runtime)
    app.state.hosts = hosts.HostMap(runtime)
    app.state.services = Services(
        {
            "invoicing": settings.invoicing_url,
            "rating": settings.rating_url,
            "dunning": settings.dunning_url,
            "notify": settings.notify_url,
            "usage-ingest": settings.usage_ingest_url,
            "payments": settings.payments_url,
        },
        timeout=settings.api_timeout,
        key_wait_seconds=settings.key_wait_seconds,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    # Outermost: a partner's own host name is resolved before anything else sees the path.
    app.add_middleware(hosts.PortalHosts, hosts=app.state.hosts, brands=app.state.brands)

    inner = app.router.lifespan_context

    async def registry() -> None:
        async with runtime.engine.begin() as conn:
            await ensure_registry(conn)

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> Any:
        await registry()
        async with inner(a) as state:
            try:
                yield state
            finally:
                await app.state.services.close()

    app.router.lifespan_context = lifespan
    problem = app.exception_handlers[BillingError]

    async def pages(request: Request, exc: Exception) -> Response:
        """On the pages, a refusal is a page in the partner's brand; on the API, problem+json."""
        assert isinstance(exc, BillingError)
        path = request.url.path
        if not path.startswith("/p/"):
            answer = problem(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        partner = path.split("/")[2]
        if exc.status_code == 401:
            return web._sign_in_page(request, partner, message=N_("Sign in to see this page."))
        titles = {403: N_("Not for you"), 404: N_("Not found"), 410: N_("Gone")}
        status = exc.status_code if exc.status_code in titles else 502
        title = titles.get(status, N_("Something went wrong on our side"))
        detail = N_("There is nothing here for your account.") if status in (403, 404) else N_("Try again in a moment.")
        return web.render(request, partner, "error.html", status=status, who=None, title=title, detail=detail)

    app.add_exception_handler(BillingError, pages)
    app.add_exception_handler(web.FormExpired, web.refuse_expired_form)
    return app


def app() -> FastAPI:
    """uvicorn factory: `uvicorn --factory portal.main:app`."""
    return build()
