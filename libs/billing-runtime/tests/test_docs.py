"""`/docs` from the service's own assets: the page names no other host, the assets are served,
FastAPI's CDN pages are gone. (In a browser with the network refused: tests/e2e/test_portal.py.)"""

from __future__ import annotations

import re

import httpx
from fastapi import APIRouter

from billing_runtime.config import CommonSettings
from billing_runtime.db import schema_metadata
from billing_runtime.service import ServiceRuntime, create_app, runtime_tables


async def test_docs_are_served_from_local_assets() -> None:
    metadata = schema_metadata("toydocs")
    runtime_tables(metadata)
    settings = CommonSettings(database_url="postgresql://nobody@127.0.0.1:1/none", kafka_bootstrap_servers="127.0.0.1:1")
    app = create_app(ServiceRuntime("toy-docs", settings, metadata), [APIRouter()], title="toy")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://toy") as client:  # no lifespan: nothing to start
        page = await client.get("/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
        assert "http" not in page.text.replace("http-equiv", ""), "the page names another host"
        assert '"validatorUrl": null' in page.text
        for asset in sources:
            r = await client.get(asset)
            assert r.status_code == 200 and len(r.content) > 500, asset
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.headers["content-type"].startswith(("application/javascript", "text/javascript"))
        assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
        assert (await client.get("/docs/oauth2-redirect")).status_code == 200
        assert (await client.get("/redoc")).status_code == 404
