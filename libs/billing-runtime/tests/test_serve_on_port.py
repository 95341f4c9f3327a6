"""`serve_on_port`: an app on a real local port for callers outside the process (a provider
sandbox posting webhooks), its lifespan run, and a failed start raised instead of waited on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from billing_runtime.embedded import port_open
from billing_runtime.testing import serve_on_port


async def test_the_app_answers_on_its_port_until_left() -> None:
    lifespan: list[str] = []

    @contextlib.asynccontextmanager
    async def held(app: FastAPI) -> AsyncIterator[None]:
        lifespan.append("started")
        yield
        lifespan.append("stopped")

    app = FastAPI(lifespan=held)
    app.get("/ping")(lambda: {"pong": True})
    async with serve_on_port(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/ping")).json() == {"pong": True}
        assert lifespan == ["started"]
    address = urlsplit(url)
    assert lifespan == ["started", "stopped"]
    assert not port_open(address.hostname or "", address.port or 0)


async def test_a_start_that_fails_is_raised() -> None:
    @contextlib.asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    with pytest.raises(RuntimeError, match="broken failed to start"):
        async with serve_on_port(FastAPI(lifespan=broken, title="broken")):
            pass
