"""The scope matrix: every route of the six services declares its scope next to it, the runtime
README's table says the same, and the running services enforce it route by route with real read,
write and admin keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from billing_runtime.api import declared_scope
from billing_runtime.auth import SCOPES
from billing_runtime.conventions import PUBLIC_PREFIXES, scope_matrix

if TYPE_CHECKING:  # the fixtures give them; conftest is not importable as a module
    from tests.security.conftest import Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")

README = Path(__file__).parents[2] / "libs" / "billing-runtime" / "README.md"
ROW = re.compile(r"^\| (\S+) \| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| \**(read|write|admin|none)\** \|$")
# What issue 12 names as admin-only, whatever else the table says.
MUST_BE_ADMIN = [
    ("payments", "PUT", "/v1/providers/{provider}"),
    ("notify", "POST", "/v1/webhook-endpoints"),
    ("notify", "DELETE", "/v1/webhook-endpoints/{endpoint_id}"),
    ("notify", "POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
    ("invoicing", "POST", "/v1/invoices/{invoice_id}/shared-links/rotate"),
    ("dunning", "PUT", "/v1/dunning-policy"),
]


def documented() -> set[tuple[str, str, str, str]]:
    return {m.groups() for line in README.read_text().splitlines() if (m := ROW.match(line))}  # type: ignore[misc]  # ROW has four groups


def actual(platform: Platform) -> set[tuple[str, str, str, str]]:
    return {(name, method, path, scope) for name, app in platform.apps.items() for method, path, scope in scope_matrix(app)}


async def test_every_route_declares_its_scope(platform: Platform) -> None:
    undeclared = []
    for name, app in platform.apps.items():
        for context in iter_route_contexts(app.routes):
            if (
                isinstance(context.original_route, APIRoute)
                and context.path is not None
                and context.path.startswith("/v1/")
                and not context.path.startswith(PUBLIC_PREFIXES)
            ):
                if declared_scope(context) is None:
                    undeclared.append((name, sorted(context.methods or ()), context.path))
    assert not undeclared


async def test_the_readme_table_is_the_matrix(platform: Platform) -> None:
    table, routes = documented(), actual(platform)
    assert len(routes) >= 70
    assert table == routes, f"only in README: {sorted(table - routes)}; only in the services: {sorted(routes - table)}"
    for row in MUST_BE_ADMIN:
        assert (*row, "admin") in routes


async def test_the_matrix_is_enforced_route_by_route(platform: Platform) -> None:
    """Each key below a route's scope gets 403 `insufficient_scope` (before the body is even read);
    the key with exactly the scope gets past authorization (whatever the handler answers then)."""
    p = platform.partners[2]
    checked = 0
    for name, method, path, needed in sorted(actual(platform)):
        if needed == "none":
            continue
        client = platform.clients[name]
        target = re.sub(r"\{[^}]+\}", "scope-probe", path)
        for held in SCOPES:
            if SCOPES.index(held) > SCOPES.index(needed):
                continue  # above the scope: the exact scope passing proves it
            body = None if method in ("GET", "DELETE") else b"{}"
            headers = {**p.headers(held), "Content-Type": "application/json"}
            r = await client.request(method, target, content=body, headers=headers)
            where = f"{name} {method} {path} with a {held} key"
            if held == needed:
                assert r.status_code not in (401, 403), f"{where}: {r.status_code} {r.text[:200]}"
            else:
                assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope"), where
            checked += 1
    assert checked >= 100
