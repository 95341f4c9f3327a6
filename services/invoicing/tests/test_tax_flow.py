"""Tax end to end: customers and closed periods in over Kafka, invoices, OSS report and VAT
evidence out over HTTP; bad tax input dead-lettered. Real PostgreSQL, Tansu and a local VIES."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from invoicing_testkit import CLOUDY, buyer_known, customer, event, invoices, period_closed, put_seller, rated, wait_for_invoices

from billing_events import InvoiceIssued, RatedLine, account_id
from billing_events.topics import INVOICES
from billing_runtime.testing import dead_lettered, publish_events, read_events, serve, tenant_headers
from invoicing.config import Settings
from invoicing.main import build
from invoicing.tax.engine import NOTES, Scheme


def m365(line_id: str, qty: str) -> RatedLine:
    return rated(line_id, "M365-BP", qty, "20.60", "EUR").model_copy(update={"timing": "advance", "category": "communications"})


async def detail(client: httpx.AsyncClient, tenant: str, buyer: str) -> dict[str, Any]:
    [summary] = await wait_for_invoices(client, tenant, 1, buyer_account_id=buyer)
    r = await client.get(f"/v1/invoices/{summary['id']}", headers=tenant_headers(tenant))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_worked_example_b_and_the_oss_report(client: httpx.AsyncClient, tenant: str, settings: Settings, kafka_bootstrap: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    people = {
        "bakery": customer(tenant, "bakery", "Dublin Bakery", country="IE", currency="EUR"),
        "acme": customer(tenant, "acme", "Acme GmbH", country="DE", vat_id="DE 136695976", currency="EUR"),
        "jean": customer(tenant, "jean", "Jean Dupont", country="FR", business=False, currency="EUR"),
        "badvat": customer(tenant, "badvat", "Bad VAT GmbH", country="DE", vat_id="DE136695977", currency="EUR"),
        "charity": customer(tenant, "charity", "Dublin Charity", country="IE", tax_exempt=True, currency="EUR"),
    }
    await publish_events(client, *(event(c, tenant) for c in people.values()))
    for c in people.values():
        await buyer_known(settings, c.account_id)
    seats = {"bakery": "5", "acme": "10", "jean": "1", "badvat": "1", "charity": "2"}
    await publish_events(client, *(event(period_closed(tenant, people[k].account_id, [m365("l1", q)], currency="EUR"), tenant) for k, q in seats.items()))
    await wait_for_invoices(client, tenant, len(seats))
    by_buyer = {i["buyer_name"]: i for i in await invoices(client, tenant)}
    assert {name: (i["net_total"], i["tax_total"], i["total"]) for name, i in by_buyer.items()} == {
        "Dublin Bakery": ("103.00", "23.69", "126.69"),
        "Acme GmbH": ("206.00", "0.00", "206.00"),
        "Jean Dupont": ("20.60", "4.12", "24.72"),
        "Bad VAT GmbH": ("20.60", "3.91", "24.51"),  # taxed as a German consumer, 19%
        "Dublin Charity": ("41.20", "0.00", "41.20"),
    }

    acme = await detail(client, tenant, people["acme"].account_id)
    assert acme["tax_breakdown"] == [{"tax_category": "AE", "rate": "0", "taxable": "206.00", "tax": "0.00", "note": NOTES[Scheme.REVERSE_CHARGE]}]
    assert (acme["buyer"]["vat_id"], acme["buyer"]["country"], acme["flags"]) == ("DE136695976", "DE", [])
    assert acme["lines"][0]["tax_scheme"] == "reverse_charge"
    bad = await detail(client, tenant, people["badvat"].account_id)
    assert bad["flags"] == ["buyer_vat_id_invalid"]
    assert (bad["lines"][0]["tax_category"], bad["lines"][0]["tax_rate"], bad["lines"][0]["tax_scheme"]) == ("S", "19", "oss")
    charity = await detail(client, tenant, people["charity"].account_id)
    assert [(t["tax_category"], t["note"]) for t in charity["tax_breakdown"]] == [("E", NOTES[Scheme.EXEMPT_BUYER])]
    assert (await detail(client, tenant, people["bakery"].account_id))["seller"]["vat_id"] == "IE6388047V"

    r = await client.get("/v1/tax/oss-report", headers=tenant_headers(tenant), params={"quarter": "2026-Q4"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [
        {"country": "DE", "rate": "19", "currency": "EUR", "taxable": "20.60", "tax": "3.91", "invoices": 1},
        {"country": "FR", "rate": "20", "currency": "EUR", "taxable": "20.60", "tax": "4.12", "invoices": 1},
    ]
    assert (await client.get("/v1/tax/oss-report", headers=tenant_headers(tenant), params={"quarter": "2026-Q3"})).json()["rows"] == []
    r = await client.get("/v1/tax/oss-report", headers=tenant_headers(tenant), params={"quarter": "2026-Q5"})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")

    # What an accounting tool receives: parties with VAT ids, each line's tax, the breakdown with its legal mention, documents.
    [issued] = await read_events(
        kafka_bootstrap,
        INVOICES.name,
        until=lambda s: len(s) >= 1,
        match=lambda e: isinstance(e.data, InvoiceIssued) and e.tenant == tenant and e.data.buyer.account_id == people["acme"].account_id,
    )
    data: InvoiceIssued = issued.data
    assert (data.seller.vat_id, data.buyer.vat_id, data.buyer.business, data.buyer.address and data.buyer.address.country) == (
        "IE6388047V",
        "DE136695976",
        True,
        "DE",
    )
    assert [(li.tax_category, li.tax_rate, li.tax_scheme, li.tax_country) for li in data.lines] == [("AE", 0, "reverse_charge", "DE")]
    assert [(t.tax_category, t.note) for t in data.tax_breakdown] == [("AE", NOTES[Scheme.REVERSE_CHARGE])]
    assert [(d.kind, d.url) for d in data.documents] == [
        ("pdf", f"/v1/invoices/{acme['id']}/pdf"),
        ("cii_xml", f"/v1/invoices/{acme['id']}/xml"),
        ("ubl_xml", f"/v1/invoices/{acme['id']}/xml?syntax=ubl"),
    ]
    assert (data.tier, data.flags, str(data.total.amount)) == ("retail", [], "206.00")

    checks = (await client.get(f"/v1/buyers/{people['badvat'].account_id}/vat-checks", headers=tenant_headers(tenant))).json()
    assert (checks["vat_id_valid"], checks["checks"][0]["checksum_valid"], checks["checks"][0]["vies_outcome"]) == (False, False, None)
    assert (await client.get(f"/v1/buyers/{people['badvat'].account_id}/vat-checks", headers=tenant_headers("someone-else"))).status_code == 404


async def test_buyer_without_a_country_is_dead_lettered_and_takes_no_number(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    stranger = event(period_closed(tenant, account_id(tenant, "never-announced"), [m365("l1", "1")], currency="EUR"), tenant)
    known = customer(tenant, "bakery", "Dublin Bakery", country="IE", currency="EUR")
    await publish_events(kafka_bootstrap, stranger, event(known, tenant))
    dead = await dead_lettered(kafka_bootstrap, stranger.id, timeout=90.0)
    assert dead["dlq_code"] == "buyer_country_missing" and "buyer without a country" in dead["dlq_error"]
    await publish_events(kafka_bootstrap, event(period_closed(tenant, known.account_id, [m365("l1", "1")], currency="EUR"), tenant))
    [issued] = await wait_for_invoices(client, tenant, 1)
    assert issued["number"] == "CL-000001"


async def test_unsupported_product_tax_category_is_dead_lettered(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    line = m365("l1", "1").model_copy(update={"tax_category": "luxury"})
    bad = event(period_closed(tenant, account_id(tenant, "x"), [line], currency="EUR"), tenant)
    await publish_events(kafka_bootstrap, bad)
    dead = await dead_lettered(kafka_bootstrap, bad.id, timeout=90.0)
    assert dead["dlq_code"] == "unsupported_tax_category" and "'luxury'" in dead["dlq_error"]
    assert await invoices(client, tenant) == []


class _Vies(BaseHTTPRequestHandler):
    """A local stand-in for the Commission's VIES REST API: DE136695976 valid, anything else not."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if body["countryCode"] == "NL":
            self.send_response(503)
            self.end_headers()
            return
        valid = body["countryCode"] + body["vatNumber"] == "DE136695976"
        answer = {**body, "valid": valid, "requestDate": "2026-11-01T10:00:00.000Z", "requestIdentifier": "WAPIAAAAZ9E1XQ42" if valid else "", "name": "ACME"}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def vies_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Vies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/check-vat-number"
    server.shutdown()
    server.server_close()


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_vies_check_decides_the_reverse_charge_and_is_kept_as_evidence(settings: Settings, tenant: str, kafka_bootstrap: str, vies_url: str) -> None:
    async with serve(build(settings.model_copy(update={"vies_url": vies_url, "vies_requester_vat_id": "IE6388047V"}))) as client:
        await put_seller(client, tenant, **CLOUDY)
        acme = customer(tenant, "acme", "Acme GmbH", country="DE", vat_id="DE136695976", currency="EUR")
        # Passes its checksum, but VIES does not know it: a consumer in Austria, flagged.
        vienna = customer(tenant, "vienna", "Wien Handel GmbH", country="AT", vat_id="ATU13585627", currency="EUR")
        # VIES down: the checksum stands (reverse charge), the evidence says VIES was unavailable.
        dutch = customer(tenant, "dutch", "Dutch BV", country="NL", vat_id="NL004495445B01", currency="EUR")
        await publish_events(client, *(event(c, tenant) for c in (acme, vienna, dutch)))
        for c in (acme, vienna, dutch):
            await buyer_known(settings, c.account_id)
        await publish_events(client, *(event(period_closed(tenant, c.account_id, [m365("l1", "1")], currency="EUR"), tenant) for c in (acme, vienna, dutch)))
        await wait_for_invoices(client, tenant, 3)
        by_buyer = {i["buyer_name"]: i for i in await invoices(client, tenant)}
        assert {name: i["tax_total"] for name, i in by_buyer.items()} == {"Acme GmbH": "0.00", "Wien Handel GmbH": "4.12", "Dutch BV": "0.00"}
        assert (await detail(client, tenant, vienna.account_id))["flags"] == ["buyer_vat_id_invalid"]

        evidence = (await client.get(f"/v1/buyers/{acme.account_id}/vat-checks", headers=tenant_headers(tenant))).json()
        [check] = evidence["checks"]
        assert (evidence["vat_id_valid"], check["vies_outcome"], check["vies_request_identifier"]) == (True, "valid", "WAPIAAAAZ9E1XQ42")
        assert check["vies_response"]["requestDate"] == "2026-11-01T10:00:00.000Z"
        dutch_check = (await client.get(f"/v1/buyers/{dutch.account_id}/vat-checks", headers=tenant_headers(tenant))).json()
        assert (dutch_check["vat_id_valid"], dutch_check["checks"][0]["vies_outcome"]) == (True, "unavailable")
    assert {"countryCode": "DE", "vatNumber": "136695976", "requesterMemberStateCode": "IE", "requesterNumber": "6388047V"} in _Vies.requests
