"""payments against a real PostgreSQL and a real Tansu broker: invoices arrive as events,
finance posts bank transfers over HTTP, PaymentSucceeded leaves through the outbox."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from prometheus_client import REGISTRY

from billing_events import (
    CloudEvent,
    InvoiceIssued,
    Money,
    account_id,
    derived_event_id,
    new_event,
)
from billing_events.testing import example_invoice_issued
from billing_events.topics import PAYMENTS
from billing_runtime.testing import REJOIN_SESSION_TIMEOUT_MS, dead_lettered, eventually, publish_events, read_events, serve, tenant_headers
from payments.config import Settings
from payments.main import build


def invoice_issued(tenant: str, invoice_id: str, number: str, total: str = "1516.25", currency: str = "USD") -> CloudEvent[Any]:
    """A complete InvoiceIssued as invoicing would emit it (worked example A: one line, no tax)."""
    data = example_invoice_issued(tenant, invoice_id, number=number, total=total, currency=currency)
    return new_event(data, source="invoicing", tenant=tenant, event_id=str(uuid.uuid4()), subject=invoice_id)


async def known_invoice(client: httpx.AsyncClient, tenant: str, invoice_id: str) -> None:
    async def shows() -> bool:
        return (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).status_code == 200

    await eventually(shows)


async def issue(client: httpx.AsyncClient, bootstrap: str, tenant: str, number: str = "NW-2026-0007", **kw: str) -> str:
    invoice_id = str(uuid.uuid4())
    await publish_events(bootstrap, invoice_issued(tenant, invoice_id, number, **kw))
    await known_invoice(client, tenant, invoice_id)
    return invoice_id


def transfer(pid: str, invoice_id: str | None, amount: Any = "1516.25", **kw: Any) -> dict[str, Any]:
    return {
        "id": pid,
        "invoice_id": invoice_id,
        "invoice_number": None,
        "amount": amount,
        "currency": "USD",
        "received_on": "2026-11-20",
        "reference": "NW-2026-0007",
        **kw,
    }


async def test_bank_transfer_emits_payment_succeeded(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    invoice_id = await issue(client, kafka_bootstrap, tenant)
    r = await client.post("/v1/payments", headers=tenant_headers(tenant), json=transfer("bank-0001", invoice_id))
    assert r.status_code == 201, r.text
    assert r.json() == {
        "payment_id": "bank-0001",
        "invoice_id": invoice_id,
        "invoice_number": "NW-2026-0007",
        "account_id": account_id(tenant, "c-1"),
        "provider": "bank_transfer",
        "amount": "1516.25",
        "currency": "USD",
        "received_on": "2026-11-20",
        "reference": "NW-2026-0007",
        "method": "bank_transfer",
        "status": "succeeded",
        "open_after": "0.00",
        "overpaid": "0.00",
    }

    events = await read_events(kafka_bootstrap, PAYMENTS.name, until=lambda s: len(s) >= 1, match=lambda e: e.tenant == tenant)
    event = events[0]
    assert event.type == "billing.payment.succeeded.v1"
    assert event.id == derived_event_id("payment_succeeded", tenant, "bank-0001")
    assert event.data.amount == Money.of("1516.25", "USD")
    assert (event.data.method, event.data.provider, event.data.paid_on) == ("bank_transfer", "bank_transfer", date(2026, 11, 20))
    assert (event.data.invoice_id, event.data.account_id) == (invoice_id, account_id(tenant, "c-1"))
    assert event.data.seller_id == account_id("distributor", tenant)
    assert event.key == account_id(tenant, "c-1")

    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    assert (invoice["amount_received"], invoice["amount_open"]) == ("1516.25", "0.00")


async def test_same_payment_twice_is_recorded_once(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    invoice_id = await issue(client, kafka_bootstrap, tenant)
    body = transfer("bank-0001", invoice_id, amount="500.00")
    first = await client.post("/v1/payments", headers=tenant_headers(tenant), json=body)
    again = await client.post("/v1/payments", headers=tenant_headers(tenant), json={**body, "amount": "500"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()

    conflict = await client.post("/v1/payments", headers=tenant_headers(tenant), json={**body, "amount": "600.00"})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "payment_id_conflict"

    # A later payment marks the end: the outbox publishes in order, so a second PaymentSucceeded
    # for bank-0001 would be on the topic before the marker.
    marker = await client.post("/v1/payments", headers=tenant_headers(tenant), json=transfer("bank-0002", invoice_id, amount="1.00"))
    assert marker.status_code == 201
    events = await read_events(
        kafka_bootstrap, PAYMENTS.name, until=lambda s: any(e.data.payment_id == "bank-0002" for e in s), match=lambda e: e.tenant == tenant
    )
    assert [e.data.payment_id for e in events] == ["bank-0001", "bank-0002"]
    assert events[0].data.amount.amount == Decimal("500.00")
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    assert invoice["amount_open"] == "1015.25"


async def test_partial_then_overpaid_by_invoice_number(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    invoice_id = await issue(client, kafka_bootstrap, tenant, number="NW-2026-0042")
    by_number = {"invoice_id": None, "invoice_number": "NW-2026-0042"}
    first = await client.post("/v1/payments", headers=tenant_headers(tenant), json={**transfer("p-1", None, "1000.00"), **by_number})
    second = await client.post("/v1/payments", headers=tenant_headers(tenant), json={**transfer("p-2", None, "600.00"), **by_number})
    assert (first.json()["open_after"], first.json()["overpaid"]) == ("516.25", "0.00")
    assert (second.json()["open_after"], second.json()["overpaid"]) == ("0.00", "83.75")
    assert second.json()["invoice_id"] == invoice_id

    page1 = (await client.get("/v1/payments", headers=tenant_headers(tenant), params={"invoice_id": invoice_id, "limit": 1})).json()
    assert [p["payment_id"] for p in page1["items"]] == ["p-1"] and page1["next_cursor"]
    page2 = (
        await client.get("/v1/payments", headers=tenant_headers(tenant), params={"invoice_id": invoice_id, "limit": 1, "cursor": page1["next_cursor"]})
    ).json()
    assert [p["payment_id"] for p in page2["items"]] == ["p-2"] and page2["next_cursor"] is None

    one = await client.get("/v1/payments/p-2", headers=tenant_headers(tenant))
    assert one.json() == second.json()
    missing = await client.get("/v1/payments/p-3", headers=tenant_headers(tenant))
    assert (missing.status_code, missing.json()["code"]) == (404, "payment_not_found")
    bad_cursor = await client.get("/v1/payments", headers=tenant_headers(tenant), params={"cursor": "garbage"})
    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (422, "invalid_cursor")


async def test_each_refusal_has_its_code(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    invoice_id = await issue(client, kafka_bootstrap, tenant)
    other = f"other-{uuid.uuid4().hex[:8]}"
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (tenant, transfer("x-1", str(uuid.uuid4())), 404, "invoice_not_found"),
        (tenant, {**transfer("x-2", None), "invoice_number": "NW-0000"}, 404, "invoice_not_found"),
        (other, transfer("x-3", invoice_id), 404, "invoice_not_found"),  # another seller's invoice
        (tenant, transfer("x-4", invoice_id, currency="EUR"), 422, "currency_mismatch"),
        (tenant, transfer("x-5", invoice_id, amount="0"), 422, "invalid_amount"),
        (tenant, transfer("x-6", invoice_id, amount="-10.00"), 422, "invalid_amount"),
        (tenant, transfer("x-7", invoice_id, amount=1516.25), 422, "invalid_amount"),
        (tenant, transfer("x-8", invoice_id, amount="10.005"), 422, "invalid_amount"),
        (tenant, transfer("x-9", None), 422, "invoice_reference_required"),
        (tenant, {**transfer("x-10", invoice_id), "invoice_number": "NW-2026-0007"}, 422, "invoice_reference_ambiguous"),
        (tenant, {**transfer("x-11", invoice_id), "received_on": "20 Nov"}, 422, "validation_error"),
    ]
    for who, body, status, code in cases:
        r = await client.post("/v1/payments", headers=tenant_headers(who), json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    listed = (await client.get("/v1/payments", headers=tenant_headers(tenant))).json()
    assert listed["items"] == []
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    assert invoice["amount_received"] == "0.00"
    no_tenant = await client.post("/v1/payments", json=transfer("x-12", invoice_id))
    assert (no_tenant.status_code, no_tenant.json()["code"]) == (401, "tenant_required")


async def test_redelivery_changes_nothing_and_poison_is_set_aside(client: httpx.AsyncClient, tenant: str, kafka_bootstrap: str) -> None:
    poison = invoice_issued(tenant, str(uuid.uuid4()), "NW-BAD")
    # Valid envelope, known type, but the total is a float: it cannot be read as an InvoiceIssued.
    await publish_events(kafka_bootstrap, poison, raw_value=poison.data.model_dump_json().replace('"1516.25"', "1516.25").encode())
    invoice_id = str(uuid.uuid4())
    good = invoice_issued(tenant, invoice_id, "NW-2026-0007")
    await publish_events(kafka_bootstrap, good)
    await known_invoice(client, tenant, invoice_id)

    found = await dead_lettered(kafka_bootstrap, poison.id, service="payments")
    assert "invalid billing.invoice.issued.v1" in found["dlq_error"]
    missing = await client.get(f"/v1/invoices/{poison.data.invoice_id}", headers=tenant_headers(tenant))
    assert missing.status_code == 404

    r = await client.post("/v1/payments", headers=tenant_headers(tenant), json=transfer("bank-1", invoice_id, amount="16.25"))
    assert r.status_code == 201
    # The same InvoiceIssued again, after money was recorded: skipped by the inbox, and the
    # amount received is not reset.
    before = duplicates()
    await publish_events(kafka_bootstrap, good)

    async def skipped() -> bool:
        return duplicates() > before

    await eventually(skipped)
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    assert (invoice["amount_received"], invoice["amount_open"]) == ("16.25", "1500.00")


def duplicates() -> float:
    labels = {"service": "payments", "type": InvoiceIssued.event_type}
    return REGISTRY.get_sample_value("billing_events_duplicate_total", labels) or 0.0


async def test_a_polled_batch_of_issued_invoices_is_projected_once(settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    """One polled batch (one buyer, so one partition, published while payments is stopped): two
    invoices, the first again under another event id, one whose total is in another currency
    (refused alone) and one reusing the first's number (its insert fails: the batch is bisected
    until it is alone). Both poisons are dead-lettered; the rest is projected once, and the batch
    applied again changes nothing."""
    settings = settings.model_copy(update={"consumer_session_timeout_ms": REJOIN_SESSION_TIMEOUT_MS})  # served twice in one group
    async with serve(build(settings)) as client:
        await issue(client, kafka_bootstrap, tenant, "NW-WARM")  # payments' position on the buyer's partition is committed
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
    bad = invoice_issued(tenant, str(uuid.uuid4()), "NW-EUR")
    other_currency = bad.model_copy(update={"data": bad.data.model_copy(update={"total": Money.of("1516.25", "EUR")})})
    same_number = invoice_issued(tenant, str(uuid.uuid4()), "NW-0001")
    batch = [
        invoice_issued(tenant, first, "NW-0001", total="100.00"),
        other_currency,
        invoice_issued(tenant, first, "NW-0001", total="100.00"),
        same_number,
        invoice_issued(tenant, second, "NW-0002", total="250.00"),
    ]
    await publish_events(kafka_bootstrap, *batch)
    async with serve(build(settings)) as client:
        await known_invoice(client, tenant, second)
        assert "is in EUR, not USD" in (await dead_lettered(kafka_bootstrap, other_currency.id, service="payments"))["dlq_error"]
        assert "IntegrityError" in (await dead_lettered(kafka_bootstrap, same_number.id, service="payments"))["dlq_error"]
        for invoice_id, number, amount_open in ((first, "NW-0001", "100.00"), (second, "NW-0002", "250.00")):
            found = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
            assert (found["invoice_number"], found["amount_open"], found["amount_received"]) == (number, amount_open, "0.00")
        for refused in (other_currency, same_number):
            assert (await client.get(f"/v1/invoices/{refused.data.invoice_id}", headers=tenant_headers(tenant))).status_code == 404
        r = await client.post("/v1/payments", headers=tenant_headers(tenant), json=transfer("bank-1", first, amount="40.00"))
        assert r.status_code == 201, r.text
        before = duplicates()
        await publish_events(kafka_bootstrap, *batch)
        await eventually(lambda: duplicates() >= before + 3)  # the three it applied are skipped by the inbox
        again = (await client.get(f"/v1/invoices/{first}", headers=tenant_headers(tenant))).json()
        assert (again["amount_received"], again["amount_open"]) == ("40.00", "60.00")
