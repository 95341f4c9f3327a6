"""The six services in this process, each with its real migrations, the shared HTTP conventions and
`AUTH_MODE=api_key`, against the test PostgreSQL and a Tansu broker; partners with API keys."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
import pytest_asyncio
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import FastAPI
from sqlalchemy import Connection

from billing_cli.platform import SERVICES as PLATFORM_SERVICES
from billing_runtime.auth import IssuedKey, Scope, issue
from billing_runtime.conventions import add_http_tables, install_http_conventions
from billing_runtime.db import create_engine
from billing_runtime.testing import api_key_headers, eventually, migrate, serve_all

# Every service of the platform, by name: its package.
SERVICES = {spec.name: spec.package for spec in PLATFORM_SERVICES}
TODAY = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
# Partner webhooks may go to this machine only (the worlds' endpoints are https://localhost/…);
# every other destination is checked as in production.
# Documents render on their first download only: rendering ahead would change the victims'
# document rows while the cross-tenant matrix compares them before and after the attack.
OVERRIDES: dict[str, dict[str, Any]] = {"notify": {"webhook_allowed_destinations": ["localhost"]}, "invoicing": {"render_ahead": False}}


@dataclass
class Partner:
    tenant: str
    keys: dict[str, IssuedKey] = field(default_factory=dict)

    @property
    def marker(self) -> str:
        """A string in every object this partner creates, so any leak of them is found by search."""
        return f"marker-{self.tenant}"

    def headers(self, scope: Scope = "write") -> dict[str, str]:
        return api_key_headers(self.keys[scope].key)


@dataclass
class Platform:
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    partners: list[Partner]
    bootstrap: str
    database_url: str

    async def issue(self, tenant: str, scope: Scope) -> IssuedKey:
        """As `billing keys issue` does: the key table, then the topic."""
        engine = create_engine(self.database_url, pool_size=1)
        try:
            return await issue(engine, self.bootstrap, tenant, scope, label="security test", now=TODAY)
        finally:
            await engine.dispose()

    async def wait_known(self, key: IssuedKey) -> None:
        """Until every service has read the key's event (they follow the key topic)."""
        for app_name, app in self.apps.items():
            conventions = app.state.http_conventions
            await eventually(partial(_knows, conventions, key.key_id), f"{app_name} to learn key {key.key_id}", 20)


def _add_http_tables(sync: Connection, schema: str) -> None:
    add_http_tables(Operations(MigrationContext.configure(sync)), schema)


async def _migrate(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        for package in SERVICES.values():
            schema = importlib.import_module(f"{package}.db").metadata.schema
            async with engine.begin() as conn:
                await conn.run_sync(_add_http_tables, schema)
    finally:
        await engine.dispose()


def build(package: str, database_url: str, bootstrap: str, **overrides: Any) -> FastAPI:
    settings_type = importlib.import_module(f"{package}.config").Settings
    given = {"database_url": database_url, "kafka_bootstrap_servers": bootstrap, "clock_fixed_at": TODAY, "auth_mode": "api_key"}
    settings = settings_type(**{**given, **OVERRIDES.get(package, {}), **overrides})
    app: FastAPI = importlib.import_module(f"{package}.main").build(settings)
    install_http_conventions(app)
    return app


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    migrate(database_url, *SERVICES.values())
    asyncio.run(_migrate(database_url))
    return database_url


@pytest.fixture(scope="module")
def build_service(migrated: str, kafka_bootstrap: str) -> Callable[..., FastAPI]:
    """`build_service("usage-ingest", **settings)`: one more instance, with settings overridden."""
    return lambda name, **overrides: build(SERVICES[name], migrated, kafka_bootstrap, **overrides)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(migrated: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    apps = {name: build(package, migrated, kafka_bootstrap) for name, package in SERVICES.items()}
    async with serve_all(apps) as clients:
        platform = Platform(apps, clients, [], kafka_bootstrap, migrated)
        run = uuid.uuid4().hex[:6]
        platform.partners.extend(Partner(f"sec-{letter}-{run}") for letter in "abc")
        wanted: list[tuple[Partner, Scope]] = [(partner, scope) for partner in platform.partners for scope in ("read", "write", "admin")]
        # Issued side by side (each is a row and an acknowledged event of its own), then waited for.
        issued = await asyncio.gather(*(platform.issue(partner.tenant, scope) for partner, scope in wanted))
        for (partner, scope), key in zip(wanted, issued, strict=True):
            partner.keys[scope] = key
        for key in issued:
            await platform.wait_known(key)
        yield platform


def _knows(conventions: Any, key_id: str) -> bool:
    """Whether a service's HTTP conventions have learnt the key (from the key topic)."""
    return key_id in conventions.keys.keys
