"""Another seller's buyers and seller profile are not the caller's to see: a preview or a VAT-check
read naming them answers 404 `buyer_not_found`, as for an account nobody has."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from invoicing_testkit import buyer_known, customer, event, put_seller, rated

from billing_runtime.testing import publish_events, tenant_headers
from invoicing.config import Settings


def preview(buyer: str, tier: str) -> dict[str, Any]:
    lines = [rated("l1", "USR-SUP", "1", "10.00").model_dump(mode="json")]
    return {"buyer_account_id": buyer, "period_start": "2026-10-01", "period_end": "2026-10-31", "currency": "USD", "tier": tier, "lines": lines}


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_another_sellers_buyer_and_profile_answer_404(client: httpx.AsyncClient, settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    attacker, victim = tenant, f"{tenant}-victim"
    await put_seller(client, attacker, name="Attacker Ltd")
    await put_seller(client, victim, name="Victim Seller Profile", address={"lines": ["7 Secret Lane"], "city": "Hidden", "country": "US"})
    theirs = customer(victim, "dental", "Victim Dental Practice")
    mine = customer(attacker, "law", "Attacker's Own Customer")
    await publish_events(client, event(theirs, victim), event(mine, attacker))
    await buyer_known(settings, theirs.account_id)
    await buyer_known(settings, mine.account_id)

    for buyer, tier in ((theirs.account_id, "retail"), (theirs.account_id, "wholesale"), (victim, "wholesale"), ("nobody", "retail")):
        r = await client.post("/v1/invoices/preview", headers=tenant_headers(attacker), json=preview(buyer, tier))
        assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (404, "application/problem+json", "buyer_not_found"), (buyer, tier, r.text)
        for datum in ("Victim", "Secret Lane", "Hidden", theirs.billing_email):
            assert datum not in r.text, (buyer, tier, r.text)
    r = await client.get(f"/v1/buyers/{theirs.account_id}/vat-checks", headers=tenant_headers(attacker))
    assert (r.status_code, r.json()["code"]) == (404, "buyer_not_found")

    # The caller's own buyer still previews, and so does the victim's for the victim.
    r = await client.post("/v1/invoices/preview", headers=tenant_headers(attacker), json=preview(mine.account_id, "retail"))
    assert (r.status_code, r.json()["buyer_name"]) == (200, "Attacker's Own Customer"), r.text
    r = await client.post("/v1/invoices/preview", headers=tenant_headers(victim), json=preview(theirs.account_id, "retail"))
    assert (r.status_code, r.json()["buyer_name"]) == (200, "Victim Dental Practice"), r.text
