"""The billing profile an end customer keeps: saved as the customer's next revision with
CustomerUpserted, refusals with stable codes and nothing written."""

from __future__ import annotations

import httpx
import pytest

from billing_events import CustomerUpserted, account_id
from billing_events.topics import CUSTOMERS
from billing_runtime.testing import read_events, tenant_headers

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def test_a_customer_saves_its_billing_profile_and_the_partner_hears_of_it(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    customer = {"id": "alpha", "name": "Alpha Dental", "billing_email": "billing@alpha.example", "country": "IE", "currency": "EUR"}
    assert (await client.post("/v1/customers", headers=tenant_headers(tenant), json={"records": [customer]})).status_code == 200
    account = account_id(tenant, "alpha")
    path = f"/v1/accounts/{account}/billing-profile"
    shown = (await client.get(path, headers=tenant_headers(tenant))).json()
    assert (shown["billing_email"], shown["contact_name"], shown["revision"], shown["address_lines"]) == ("billing@alpha.example", None, 1, [])

    profile = {
        "billing_email": "accounts@alpha.example",
        "contact_name": "Ann Alpha",
        "contact_phone": "+353 1 234 5678",
        "address_lines": ["1 Main Street", ""],
        "city": "Dublin",
        "postal_code": "D02 X285",
        "vat_id": "ie 6388047 v",
    }
    saved = await client.put(path, headers=tenant_headers(tenant), json=profile)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["changed"], body["revision"], body["vat_id"], body["address_lines"]) == (True, 2, "IE6388047V", ["1 Main Street"])
    assert body["name"] == "Alpha Dental"  # the partner's to change
    again = (await client.put(path, headers=tenant_headers(tenant), json=profile)).json()
    assert (again["changed"], again["revision"]) == (False, 2)  # the same profile: no new revision, no event

    events = await read_events(kafka_bootstrap, CUSTOMERS.name, until=lambda seen: len(seen) >= 2, match=lambda e: e.tenant == tenant)
    upserted = [e.data for e in events if isinstance(e.data, CustomerUpserted)]
    assert [u.revision for u in upserted] == [1, 2]
    latest = upserted[-1]
    assert (latest.billing_email, latest.contact_name, latest.contact_phone, latest.vat_id) == (
        "accounts@alpha.example",
        "Ann Alpha",
        "+353 1 234 5678",
        "IE6388047V",
    )
    assert latest.address is not None and (latest.address.lines, latest.address.city, latest.address.country) == (["1 Main Street"], "Dublin", "IE")
    listed = (await client.get("/v1/customers/alpha", headers=tenant_headers(tenant))).json()
    assert (listed["billing_email"], listed["contact_name"], listed["revision"]) == ("accounts@alpha.example", "Ann Alpha", 2)

    for change, code, field in (
        ({"billing_email": "not an address"}, "invalid_email", "billing_email"),
        ({"vat_id": "IE1234567X"}, "invalid_vat_id", "vat_id"),
        ({"vat_id": "DE136695976"}, "invalid_vat_id", "vat_id"),  # valid, but not an Irish VAT id
        ({"contact_phone": "call me"}, "invalid_phone", "contact_phone"),
        ({"city": ""}, "incomplete_address", "city"),
    ):
        refused = await client.put(path, headers=tenant_headers(tenant), json={**profile, **change})
        assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json"), change
        assert (refused.json()["code"], refused.json()["field"]) == (code, field), change
    assert (await client.get(path, headers=tenant_headers(tenant))).json()["revision"] == 2  # nothing written
    unknown = await client.get(f"/v1/accounts/{account_id(tenant, 'nobody')}/billing-profile", headers=tenant_headers(tenant))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "customer_not_found")
    other_tenant = await client.get(path, headers=tenant_headers(f"{tenant}-other"))
    assert other_tenant.status_code == 404
