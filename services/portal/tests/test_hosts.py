"""The host middleware alone (the real portal at a partner's host is in tests/security and tests/e2e):
which path a request on a partner's host reaches, and which it never does."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from portal.hosts import HostMap, PortalHosts, normalise


class Warmed:
    """Brands whose table is not read (this test has no database): records what was warmed."""

    def __init__(self) -> None:
        self.tenants: list[str] = []

    async def warm(self, tenant: str) -> None:
        self.tenants.append(tenant)


def mapped(mapping: dict[str, str]) -> HostMap:
    hosts = HostMap(runtime=None)
    hosts.by_host, hosts.by_tenant = dict(mapping), {t: h for h, t in mapping.items()}
    hosts._loaded_at = time.monotonic() + 3600  # fresh: no database to read
    return hosts


def app_behind(hosts: HostMap, brands: Warmed) -> FastAPI:
    app = FastAPI()

    @app.get("/{path:path}")
    async def echo(path: str, request: Request) -> dict[str, Any]:
        return {"path": request.url.path, "host": request.scope.get("state", {}).get("portal_host")}

    app.add_middleware(PortalHosts, hosts=hosts, brands=brands)
    return app


def test_a_host_header_is_keyed_without_port_case_or_trailing_dot() -> None:
    assert normalise("Billing.Acme.Example:8443") == "billing.acme.example"
    assert normalise("billing.acme.example.") == "billing.acme.example"
    assert normalise("[::1]:8107") is None and normalise(None) is None and normalise("") is None


@pytest.mark.parametrize(
    ("host", "path", "status", "reached"),
    [
        ("billing.acme.example", "/", 200, "/p/acme-it/"),
        ("billing.acme.example:8107", "/account", 200, "/p/acme-it/account"),
        ("BILLING.ACME.EXAMPLE", "/sign-in/tok", 200, "/p/acme-it/sign-in/tok"),
        ("billing.acme.example", "/p/acme-it/invoices", 200, "/p/acme-it/invoices"),
        ("billing.acme.example", "/p/beta-msp/invoices", 404, None),
        ("billing.acme.example", "/p/beta-msp", 404, None),
        ("billing.acme.example", "/static/portal.css", 200, "/static/portal.css"),
        ("billing.acme.example", "/v1/portal/host", 200, "/v1/portal/host"),
        ("portal.distributor.example", "/account", 200, "/account"),
        ("portal.distributor.example", "/p/beta-msp/invoices", 200, "/p/beta-msp/invoices"),
    ],
)
async def test_a_partners_host_serves_that_partners_portal_only(host: str, path: str, status: int, reached: str | None) -> None:
    brands = Warmed()
    app = app_behind(mapped({"billing.acme.example": "acme-it"}), brands)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
        r = await client.get(path, headers={"host": host})
    assert r.status_code == status
    if reached is not None:
        on_host = normalise(host) == "billing.acme.example"
        assert r.json() == {"path": reached, "host": "billing.acme.example" if on_host else None}
        assert brands.tenants == (["acme-it"] if on_host else (["beta-msp"] if reached.startswith("/p/beta-msp") else []))
