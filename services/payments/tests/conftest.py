from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from billing_runtime.testing import serve_on_port, service_under_test
from payments.config import Settings
from payments.main import build
from provider_sandboxes import SandboxServer

# The harness's `migrated`, `settings`, `app` and `client` (billing_runtime.testing) follow from it.
service = service_under_test("payments")
# The Stripe and GoCardless sandboxes are provider_sandboxes.testing's `stripe_sandbox` and `gocardless_sandbox`.


@dataclass
class Live:
    """payments served on a real port (the sandboxes post webhooks to it), pointed at the sandboxes."""

    url: str
    client: httpx.AsyncClient
    stripe: SandboxServer
    gocardless: SandboxServer


@pytest.fixture(scope="module")
def live_settings() -> dict[str, Any]:
    """Settings of the `live` payments beyond the common ones; a test module may override it."""
    return {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(
    migrated: str, kafka_bootstrap: str, stripe_sandbox: SandboxServer, gocardless_sandbox: SandboxServer, live_settings: dict[str, Any]
) -> AsyncIterator[Live]:
    settings = Settings(
        **{
            "database_url": migrated,
            "kafka_bootstrap_servers": kafka_bootstrap,
            "stripe_api_base": stripe_sandbox.url,
            "gocardless_base_url": gocardless_sandbox.url,
            "provider_timeout_seconds": 1.5,
            "collector_interval_seconds": 0.1,
            "reconcile_after_seconds": 0.5,
            **live_settings,
        }
    )
    async with serve_on_port(build(settings)) as url, httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        yield Live(url, client, stripe_sandbox, gocardless_sandbox)
