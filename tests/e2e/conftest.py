from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_cli.platform import SANDBOXES, SERVICES, Platform
from billing_runtime.embedded import drop_database, free_port, with_database


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Platform]:
    """The whole platform as in `billing up`: the services and the portal as separate processes, a
    Tansu broker of its own (so a test may restart it), the test PostgreSQL server, an SMTP sink,
    and the Stripe and GoCardless sandboxes on ports of their own. A module's `PLATFORM_ENV` adds
    to the environment (the portal's tests: `AUTH_MODE=api_key`)."""
    database = f"billing_e2e_{free_port()}"
    env = {
        **getattr(request.module, "PLATFORM_ENV", {}),
        "DATABASE_URL": postgres_server,
        "BILLING_KAFKA_PORT": str(free_port()),
        "BILLING_SMTP_PORT": str(free_port()),
        "OUTBOX_POLL_MS": "50",
        "CONSUMER_LAG_INTERVAL_SECONDS": "1",  # billing_consumer_lag, as the lag and dashboard tests read it
    }
    for spec in SERVICES:
        env[spec.port_env] = str(free_port())
    for sandbox in SANDBOXES:
        env[sandbox.port_env] = str(free_port())
    platform = Platform(state_dir=Path(tmp_path_factory.mktemp("platform")), env={**os.environ, **env}, database_name=database, fresh_database=True, quiet=True)
    platform.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    platform.env.pop("NOTIFY_SMTP_HOST", None)
    for sandbox in SANDBOXES:
        platform.env.pop(sandbox.payments_env, None)
    try:
        platform.start()
        yield platform
    finally:
        # Told to stop all at once, so they wind down side by side: stop() then waits for each in turn.
        for process in platform.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        platform.stop()
        asyncio.run(drop_database(with_database(postgres_server, database)))
