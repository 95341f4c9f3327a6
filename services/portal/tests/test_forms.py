"""A posted form counts only with the CSRF token its page gave: otherwise the page says the form has
expired (403, in the partner's brand), whichever route it was posted to."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from billing_runtime.testing import migrate
from portal.config import Settings
from portal.main import build

NOW = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    return migrate(database_url, "portal")


@pytest.mark.parametrize("token", [None, "not-the-token"])
async def test_a_form_without_its_csrf_token_is_refused_as_expired(migrated: str, token: str | None) -> None:
    app = build(Settings(database_url=migrated, kafka_bootstrap_servers="127.0.0.1:1", clock_fixed_at=NOW, secret_key="k" * 64))
    form = {"email": "nobody@acme.example"} | ({"csrf_token": token} if token else {})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as client:
            refused = await client.post("/p/acme-it/sign-in", data=form, cookies={"portal_pre": "pre-token"})
            accepted = await client.post(
                "/p/acme-it/sign-in", data={**form, "csrf_token": app.state.secrets.csrf("pre-token")}, cookies={"portal_pre": "pre-token"}
            )
    finally:
        await app.state.runtime.engine.dispose()
    assert refused.status_code == 403 and "This form has expired" in refused.text and "Reload the page and send it again." in refused.text
    assert refused.headers["content-security-policy"].startswith("default-src 'self'")
    # The same form with its token: the answer every address gets (a link is on its way if it is known).
    assert accepted.status_code == 200 and "This form has expired" not in accepted.text
