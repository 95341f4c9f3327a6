"""Credit notes, void, partial payments and refunds: invoices issued through the service, credited over HTTP."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx
import pytest
from invoicing_testkit import CLOUDY, customer, payment, period_closed, put_seller, rated
from sqlalchemy import text

from billing_events import Money, PaymentRefunded, RatedLine
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import tenant_headers
from invoicing.buyer.service import record_customer
from invoicing.config import Settings
from invoicing.invoice.service import InvalidPayment, apply_payment, apply_refund, issue_invoice

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


async def issue(runtime: ServiceRuntime[Settings], tenant: str, external_id: str, lines: list[RatedLine], **who: Any) -> dict[str, Any]:
    buyer = customer(tenant, external_id, external_id.title(), currency="EUR", **who)
    async with runtime.transaction() as session:
        await record_customer(runtime, session, buyer)
        invoice_id = await issue_invoice(runtime, session, period_closed(tenant, buyer.account_id, lines, currency="EUR"))
    return {"id": invoice_id, "buyer_account_id": buyer.account_id, "currency": "EUR"}


async def get_invoice(client: httpx.AsyncClient, tenant: str, invoice_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def credit(client: httpx.AsyncClient, tenant: str, invoice_id: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(f"/v1/invoices/{invoice_id}/credit-notes", headers={**tenant_headers(tenant), "Idempotency-Key": key}, json=body)


async def outbox(runtime: ServiceRuntime[Settings], buyer: str) -> list[tuple[str, dict[str, Any]]]:
    async with runtime.sessions() as session:
        rows = await session.execute(text("SELECT event_type, value FROM invoicing.outbox WHERE key = :k ORDER BY id"), {"k": buyer.encode()})
        return [(r.event_type, json.loads(r.value)) for r in rows]


async def test_partial_credits_up_to_the_open_amount(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    lines = [rated("l1", "M365-BP", "5", "20.60", "EUR"), rated("l2", "SHIP", "1", "52.50", "EUR")]
    invoice = await issue(runtime, tenant, "bakery", lines, country="IE")
    assert (await get_invoice(client, tenant, invoice["id"]))["total"] == "191.27"  # 155.50 + 35.77

    first = await credit(client, tenant, invoice["id"], "k1", {"reason": "Shipment lost", "lines": [{"line_id": "l2", "amount": "52.50"}]})
    assert first.status_code == 201, first.text
    note = first.json()
    assert (note["number"], note["net_total"], note["tax_total"], note["total"]) == ("CL-CN-000001", "-52.50", "-12.08", "-64.58")
    assert note["tax_breakdown"] == [{"tax_category": "S", "rate": "23", "taxable": "-52.50", "tax": "-12.08", "note": None}]
    # The same Idempotency-Key again: the same credit note, nothing new.
    again = await credit(client, tenant, invoice["id"], "k1", {"reason": "Shipment lost", "lines": [{"line_id": "l2", "amount": "52.50"}]})
    assert (again.status_code, again.json()) == (201, note)

    after = await get_invoice(client, tenant, invoice["id"])
    assert (after["status"], after["credited_total"], after["open_amount"]) == ("open", "64.58", "126.69")

    for body, status, code in (
        ({"lines": [{"line_id": "l2", "amount": "0.01"}]}, 400, "invalid_credit_line"),  # l2 is fully credited
        ({"lines": [{"line_id": "nope", "amount": "1.00"}]}, 400, "invalid_credit_line"),
        ({"lines": [{"line_id": "l1", "amount": "1.001"}]}, 400, "invalid_credit_line"),
        ({"lines": [{"line_id": "l1", "amount": "-1.00"}]}, 400, "invalid_credit_line"),
        ({"lines": []}, 422, "validation_error"),
    ):
        r = await credit(client, tenant, invoice["id"], f"bad-{code}-{status}-{body}", body)
        assert (r.status_code, r.json()["code"]) == (status, code), body
    other = await issue(runtime, tenant, "other", [rated("l1", "X", "1", "10.00", "EUR")], country="IE")
    r = await credit(client, tenant, other["id"], "k1", {})
    assert (r.status_code, r.json()["code"]) == (409, "idempotency_key_reused")
    r = await client.post(f"/v1/invoices/{invoice['id']}/credit-notes", headers=tenant_headers(tenant), json={})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")

    # Half the invoice is paid. 62.35 net + 23% (14.34) = 76.69: exactly what is open, so the invoice is paid.
    async with runtime.transaction() as session:
        await apply_payment(runtime, session, payment(tenant, invoice, "50.00", date(2026, 11, 10)))
    r = await credit(client, tenant, invoice["id"], "k3", {"lines": [{"line_id": "l1", "amount": "62.35"}]})
    assert r.status_code == 201, r.text
    assert (r.json()["number"], r.json()["total"], r.json()["amount_to_return"]) == ("CL-CN-000002", "-76.69", "0.00")
    paid = await get_invoice(client, tenant, invoice["id"])
    summary = (paid["status"], paid["paid_on"], paid["amount_paid"], paid["credited_total"], paid["open_amount"])
    assert summary == ("paid", "2026-11-02", "50.00", "141.27", "0.00")

    # The paid invoice can still be credited: the 40.65 net left on l1 (+ 9.35 VAT) is the 50.00 paid, to go back.
    r = await credit(client, tenant, invoice["id"], "k4", {"refund_to": "buyer_balance"})
    assert r.status_code == 201, r.text
    assert (r.json()["total"], r.json()["refund_to"], r.json()["amount_to_return"]) == ("-50.00", "buyer_balance", "50.00")
    after = await get_invoice(client, tenant, invoice["id"])
    assert (after["status"], after["paid_on"], after["credited_total"], after["open_amount"]) == ("paid", "2026-11-02", "191.27", "0.00")
    r = await credit(client, tenant, invoice["id"], "k5", {})
    assert (r.status_code, r.json()["code"]) == (409, "invoice_not_creditable")
    assert len((await client.get(f"/v1/invoices/{invoice['id']}/credit-notes", headers=tenant_headers(tenant))).json()["items"]) == 3

    events = await outbox(runtime, invoice["buyer_account_id"])
    assert [t for t, _ in events] == [
        "billing.invoice.issued.v1",
        "billing.credit_note.issued.v1",
        "billing.credit_note.issued.v1",
        "billing.invoice.settled.v1",
        "billing.credit_note.issued.v1",  # the invoice was settled already: no second InvoiceSettled
    ]
    last_note = events[2][1]
    assert (last_note["total"]["amount"], last_note["lines"][0]["net"]["amount"], last_note["invoice_number"]) == ("-76.69", "-62.35", paid["number"])
    assert events[3][1]["amount_paid"] == {"amount": "50.00", "currency": "EUR"}
    assert (events[1][1]["refund_to"], events[4][1]["refund_to"]) == ("original_method", "buyer_balance")


async def test_full_credit_of_an_unpaid_invoice_voids_it(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    invoice = await issue(runtime, tenant, "acme", [rated("l1", "M365-BP", "10", "20.60", "EUR")], country="DE", vat_id="DE136695976")
    r = await credit(client, tenant, invoice["id"], "void-1", {"reason": "Cancelled order"})
    assert r.status_code == 201, r.text
    note = r.json()
    assert (note["total"], note["tax_breakdown"][0]["tax_category"]) == ("-206.00", "AE")
    assert "Article 196" in note["tax_breakdown"][0]["note"]
    voided = await get_invoice(client, tenant, invoice["id"])
    assert (voided["status"], voided["open_amount"], voided["paid_on"]) == ("void", "0.00", None)
    listed = (await client.get("/v1/invoices", headers=tenant_headers(tenant), params={"status": "void"})).json()["items"]
    assert [i["id"] for i in listed] == [invoice["id"]]
    assert [t for t, _ in await outbox(runtime, invoice["buyer_account_id"])][-1] == "billing.invoice.settled.v1"
    assert (await client.get(f"/v1/credit-notes/{note['id']}", headers=tenant_headers("someone-else"))).status_code == 404


async def test_credits_reduce_the_oss_report(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    invoice = await issue(runtime, tenant, "jean", [rated("l1", "M365-BP", "3", "20.60", "EUR")], country="FR", business=False)
    r = await credit(client, tenant, invoice["id"], "c1", {"lines": [{"line_id": "l1", "amount": "20.60"}]})
    assert r.json()["total"] == "-24.72"
    report = (await client.get("/v1/tax/oss-report", headers=tenant_headers(tenant), params={"quarter": "2026-Q4"})).json()
    assert report["rows"] == [{"country": "FR", "rate": "20", "currency": "EUR", "taxable": "41.20", "tax": "8.24", "invoices": 1}]


def refund(tenant: str, invoice: dict[str, Any], payment_id: str, amount: str, refund_id: str, credit_note_id: str | None = None) -> PaymentRefunded:
    return PaymentRefunded(
        refund_id=refund_id,
        payment_id=payment_id,
        invoice_id=invoice["id"],
        seller_id=tenant,
        account_id=invoice["buyer_account_id"],
        amount=Money.of(amount, "EUR"),
        refunded_on=date(2026, 11, 20),
        credit_note_id=credit_note_id,
    )


async def paid_invoice(
    client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str, external_id: str, line: RatedLine, amount: str, paid_on: date, payment_id: str
) -> dict[str, Any]:
    """Cloudy's invoice of `line` to a new Irish buyer, paid in full (`amount`) by `payment_id`."""
    await put_seller(client, tenant, **CLOUDY)
    invoice = await issue(runtime, tenant, external_id, [line], country="IE")
    async with runtime.transaction() as session:
        await apply_payment(runtime, session, payment(tenant, invoice, amount, paid_on, payment_id=payment_id))
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"
    return invoice


async def test_a_refund_reopens_a_paid_invoice(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    invoice = await paid_invoice(client, runtime, tenant, "refunded", rated("l1", "X", "1", "100.00", "EUR"), "123.00", date(2026, 11, 10), f"{tenant}-p1")

    async with runtime.transaction() as session:
        await apply_refund(runtime, session, refund(tenant, invoice, f"{tenant}-p1", "23.00", f"{tenant}-r1"))
    for _ in range(2):  # the same refund again changes nothing
        async with runtime.transaction() as session:
            await apply_refund(runtime, session, refund(tenant, invoice, f"{tenant}-p1", "23.00", f"{tenant}-r1"))
    reopened = await get_invoice(client, tenant, invoice["id"])
    assert (reopened["status"], reopened["paid_on"], reopened["amount_paid"], reopened["open_amount"]) == ("open", None, "100.00", "23.00")

    for bad, message in (
        (refund(tenant, invoice, f"{tenant}-p1", "100.01", f"{tenant}-r2"), "more than"),
        (refund(tenant, invoice, "no-such-payment", "1.00", f"{tenant}-r3"), "no such payment"),
        (refund(tenant, invoice, f"{tenant}-p1", "0.001", f"{tenant}-r4"), "not a positive"),
    ):
        with pytest.raises(InvalidPayment, match=message):
            async with runtime.transaction() as session:
                await apply_refund(runtime, session, bad)
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_paid"] == "100.00"


async def test_a_paid_invoice_credited_in_full_once_whatever_the_retries(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    m365 = rated("l1", "M365-BP", "5", "20.60", "EUR")
    invoice = await paid_invoice(client, runtime, tenant, "paidcard", m365, "126.69", date(2026, 11, 3), f"{tenant}-card")

    answers = [await credit(client, tenant, invoice["id"], "refund-all", {"reason": "Cancelled", "refund_to": "original_method"}) for _ in range(3)]
    assert {a.status_code for a in answers} == {201} and answers[0].json() == answers[1].json() == answers[2].json()
    note = answers[0].json()
    assert (note["total"], note["tax_total"], note["refund_to"], note["amount_to_return"]) == ("-126.69", "-23.69", "original_method", "126.69")
    events = [data for kind, data in await outbox(runtime, invoice["buyer_account_id"]) if kind == "billing.credit_note.issued.v1"]
    assert [(e["credit_note_id"], e["total"]["amount"], e["refund_to"]) for e in events] == [(note["id"], "-126.69", "original_method")]

    # payments refunds the card and says so, linked to the credit note: the money paid goes down, the invoice stays settled.
    linked = refund(tenant, invoice, f"{tenant}-card", "126.69", f"{note['id']}:card", credit_note_id=note["id"])
    for _ in range(2):
        async with runtime.transaction() as session:
            await apply_refund(runtime, session, linked)
    after = await get_invoice(client, tenant, invoice["id"])
    assert (after["status"], after["amount_paid"], after["credited_total"], after["open_amount"]) == ("paid", "0.00", "126.69", "0.00")


async def test_a_credit_by_amount_is_spread_over_the_lines_to_the_cent(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    lines = [rated("l1", "M365-BP", "5", "20.60", "EUR"), rated("l2", "SHIP", "1", "52.50", "EUR"), rated("l3", "X", "1", "0.01", "EUR")]
    invoice = await issue(runtime, tenant, "spread", lines, country="IE")
    assert (await get_invoice(client, tenant, invoice["id"]))["total"] == "191.28"  # 155.51 + 35.77
    async with runtime.transaction() as session:
        await apply_payment(runtime, session, payment(tenant, invoice, "191.28", date(2026, 11, 3)))

    # 50.00 net over 103.00 / 52.50 / 0.01: 33.118.. / 16.880.. / 0.003.. → 33.12 / 16.88 / 0.00 (largest remainders).
    r = await credit(client, tenant, invoice["id"], "goodwill", {"amount": "50.00", "reason": "Goodwill"})
    assert r.status_code == 201, r.text
    note = r.json()
    assert [(li["line_id"], li["net"]) for li in note["lines"]] == [("l1", "-33.12"), ("l2", "-16.88")]
    assert (note["net_total"], note["tax_total"], note["total"], note["amount_to_return"]) == ("-50.00", "-11.50", "-61.50", "61.50")
    after = await get_invoice(client, tenant, invoice["id"])
    assert (after["status"], after["credited_total"], after["amount_paid"]) == ("paid", "61.50", "191.28")

    for body, status, code in (
        ({"amount": "105.52"}, 400, "invalid_credit_line"),  # 105.51 net is left
        ({"amount": "0.001"}, 400, "invalid_credit_line"),
        ({"amount": "1.00", "lines": [{"line_id": "l1", "amount": "1.00"}]}, 400, "invalid_credit_line"),
        ({"refund_to": "elsewhere"}, 422, "validation_error"),
    ):
        r = await credit(client, tenant, invoice["id"], f"bad-{body}", body)
        assert (r.status_code, r.json()["code"]) == (status, code), body


async def test_credits_never_exceed_what_is_left_creditable(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    # VAT rounds on the invoice's 0.06 (0.01) but on each credited 0.03 too (0.01 each).
    invoice = await issue(runtime, tenant, "cents", [rated("a", "X", "1", "0.03", "EUR"), rated("b", "Y", "1", "0.03", "EUR")], country="IE")
    assert (await get_invoice(client, tenant, invoice["id"]))["total"] == "0.07"
    first = await credit(client, tenant, invoice["id"], "a", {"lines": [{"line_id": "a", "amount": "0.03"}]})
    assert first.json()["total"] == "-0.04"
    r = await credit(client, tenant, invoice["id"], "b", {"lines": [{"line_id": "b", "amount": "0.03"}]})
    assert (r.status_code, r.json()["code"]) == (409, "credit_exceeds_creditable_amount")
    assert (await get_invoice(client, tenant, invoice["id"]))["credited_total"] == "0.04"
