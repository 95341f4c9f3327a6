"""Credit notes on paid invoices over real HTTP and Kafka: the money goes back once, to the cent,
the way the seller chose (card refund at the Stripe sandbox, SEPA refund file, or the buyer's
balance that the next invoice consumes before collecting)."""

from __future__ import annotations

import asyncio
import json
import uuid
import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from billing_events import CloudEvent, CreditNoteIssued, Money, new_event
from billing_events.events.invoicing import RefundDestination
from billing_runtime.testing import publish_events, tenant_headers
from provider_sandboxes import stripe_signature

from .conftest import Live
from .test_collection import (
    attempts,
    buyer,
    collected_by_direct_debit,
    invoice,
    of_type,
    payment_events,
    save_card,
    setup_stripe,
    tenant_id,
)
from .test_payments_api import eventually, invoice_issued

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAIN_001 = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}


def credit_note(tenant: str, invoice_id: str, total: str, refund_to: RefundDestination | None, number: str = "CL-CN-000001") -> CreditNoteIssued:
    """A CreditNoteIssued as invoicing emits it: amounts negative."""
    return CreditNoteIssued(
        credit_note_id=str(uuid.uuid4()),
        number=number,
        invoice_id=invoice_id,
        invoice_number="CL-0001",
        seller_id=f"seller-of-{tenant}",
        buyer_account_id=buyer(tenant),
        issued_on=date(2026, 11, 25),
        currency="EUR",
        net_total=Money.of(f"-{total}", "EUR"),
        tax_total=Money.of("0.00", "EUR"),
        total=Money.of(f"-{total}", "EUR"),
        refund_to=refund_to,
    )


def as_event(tenant: str, note: CreditNoteIssued, event_id: str) -> CloudEvent[Any]:
    return new_event(note, source="invoicing", tenant=tenant, event_id=event_id, subject=note.credit_note_id)


async def paid_by_card(live: Live, kafka_bootstrap: str, tenant: str, total: str, number: str = "CL-0001") -> tuple[Any, str, str]:
    """A saved card, an invoice of `total` EUR charged on issue; (stripe client, webhook secret, invoice id)."""
    sc, secret = await setup_stripe(live, tenant)
    await save_card(live, sc, tenant, "card-1", "pm_card_visa")
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, number, total=total, currency="EUR"))

    async def paid() -> bool:
        return (await invoice(live, tenant, invoice_id)).get("amount_open") == "0.00"

    await eventually(paid)
    return sc, secret, invoice_id


async def test_a_paid_card_invoice_credited_in_full_is_refunded_once(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, secret, invoice_id = await paid_by_card(live, kafka_bootstrap, tenant, "126.69")
    intent = (await attempts(live, tenant, invoice_id))["items"][0]["provider_ref"]

    # Stripe makes the refund but its answer is lost: payments must ask again under the same key, not refund again.
    fault = {"method": "POST", "path_prefix": "/v1/refunds", "mode": "error_after_commit", "times": 1}
    assert httpx.post(f"{live.stripe.url}/_sandbox/faults", json=fault).status_code == 201
    note = credit_note(tenant, invoice_id, "126.69", "original_method")
    first_id = str(uuid.uuid4())
    # The seller's retried request gives invoicing's same event; a replay of the topic, another envelope of the same credit note.
    await publish_events(kafka_bootstrap, as_event(tenant, note, first_id), as_event(tenant, note, first_id), as_event(tenant, note, str(uuid.uuid4())))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.refunded")) >= 1)
    refunded = of_type(events, "payment.refunded")[0].data
    assert (refunded.amount, refunded.payment_id, refunded.credit_note_id, refunded.credit_note_number) == (
        Money.of("126.69", "EUR"),
        f"{invoice_id}:1",
        note.credit_note_id,
        note.number,
    )
    assert (refunded.refund_to, refunded.method, refunded.provider) == ("original_method", "card", "stripe")
    assert refunded.provider_ref is not None and refunded.provider_ref.startswith("re_")

    # Every refund webhook Stripe sent, delivered again, and the refund announced once more under a new event id.
    url = f"{live.url}/v1/webhooks/stripe/{tenant}"
    sent = [e for e in (await asyncio.to_thread(sc.v1.events.list, {"limit": 100})).data if e.type.startswith("refund.")]
    assert sent
    for stripe_event in sent:
        body = json.dumps(stripe_event.to_dict()).encode()
        replay = await live.client.post(url, content=body, headers={"Stripe-Signature": stripe_signature(body, secret)})
        assert replay.json()["effect"] == "duplicate"
        renamed = json.dumps({**stripe_event.to_dict(), "id": f"evt_again_{uuid.uuid4().hex[:12]}"}).encode()
        again = await live.client.post(url, content=renamed, headers={"Stripe-Signature": stripe_signature(renamed, secret)})
        assert again.json()["effect"] == "unchanged"

    # A marker behind the replays on the same partition: every effect they could have had is on the topic before it.
    marker = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, marker, "CL-0002", total="1.00", currency="EUR"))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: any(e.data.invoice_id == marker for e in of_type(s, "payment.succeeded")))
    assert len(of_type(events, "payment.refunded")) == 1
    refunds = (await asyncio.to_thread(sc.v1.refunds.list, {"payment_intent": intent})).data
    assert [(r.amount, r.currency) for r in refunds] == [(12669, "eur")]
    listed = (await attempts(live, tenant, invoice_id))["refunds"]
    assert [(r["status"], r["amount"], r["provider"], r["provider_ref"]) for r in listed] == [("succeeded", "126.69", "stripe", refunds[0].id)]
    after = await invoice(live, tenant, invoice_id)
    assert (after["amount_received"], after["amount_credited"], after["amount_open"], after["overpaid"]) == ("0.00", "126.69", "0.00", "0.00")


async def test_a_partial_credit_note_on_a_paid_invoice_is_refunded_to_the_cent(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, _, invoice_id = await paid_by_card(live, kafka_bootstrap, tenant, "191.27")
    # Invoicing's credit of the 52.50 shipping line at 23 %: 52.50 + 12.08 = 64.58.
    note = credit_note(tenant, invoice_id, "64.58", None)
    await publish_events(kafka_bootstrap, as_event(tenant, note, str(uuid.uuid4())))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.refunded")) >= 1)
    assert of_type(events, "payment.refunded")[0].data.amount == Money.of("64.58", "EUR")
    intent = (await attempts(live, tenant, invoice_id))["items"][0]["provider_ref"]
    assert [r.amount for r in (await asyncio.to_thread(sc.v1.refunds.list, {"payment_intent": intent})).data] == [6458]
    after = await invoice(live, tenant, invoice_id)
    assert (after["amount_received"], after["amount_credited"], after["amount_open"]) == ("126.69", "64.58", "0.00")


async def test_a_credit_kept_as_the_buyers_balance_pays_the_next_invoice_first(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, _, first = await paid_by_card(live, kafka_bootstrap, tenant, "126.69")
    note = credit_note(tenant, first, "26.69", "buyer_balance")
    await publish_events(kafka_bootstrap, as_event(tenant, note, str(uuid.uuid4())))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.refunded")) >= 1)
    kept = of_type(events, "payment.refunded")[0].data
    assert (kept.amount, kept.refund_to, kept.method, kept.provider, kept.credit_note_id) == (
        Money.of("26.69", "EUR"),
        "buyer_balance",
        "account_credit",
        "account_credit",
        note.credit_note_id,
    )
    balance = (await live.client.get(f"/v1/accounts/{buyer(tenant)}/credit", headers=tenant_headers(tenant))).json()["credit"]
    assert balance == [{"amount": "26.69", "currency": "EUR"}]

    second = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, second, "CL-0002", total="100.00", currency="EUR"))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len([e for e in of_type(s, "payment.succeeded") if e.data.invoice_id == second]) >= 2)
    paid = sorted((e.data.payment_id, e.data.provider, e.data.amount) for e in of_type(events, "payment.succeeded") if e.data.invoice_id == second)
    assert paid == sorted([(f"credit:{second}", "account_credit", Money.of("26.69", "EUR")), (f"{second}:1", "stripe", Money.of("73.31", "EUR"))])
    intents = (await asyncio.to_thread(sc.v1.payment_intents.list, {"limit": 100})).data
    assert sorted(i.amount for i in intents) == [7331, 12669]  # the card paid only what the balance did not
    assert (await asyncio.to_thread(sc.v1.refunds.list, {"limit": 100})).data == []
    assert (await live.client.get(f"/v1/accounts/{buyer(tenant)}/credit", headers=tenant_headers(tenant))).json()["credit"] == []
    assert (await invoice(live, tenant, second))["amount_open"] == "0.00"
    assert (await invoice(live, tenant, first))["amount_received"] == "100.00"


async def test_a_bank_transfer_is_paid_back_with_a_sepa_refund_file(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0001", total="191.27", currency="EUR"))

    async def known() -> bool:
        return (await live.client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).status_code == 200

    await eventually(known)
    # The buyer pays by bank transfer; the seller's camt.053 statement names the payer's account, kept for its refunds.
    reference = (await invoice(live, tenant, invoice_id))["creditor_reference"]
    statement = (
        '<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>CAMT-{tenant}</MsgId></GrpHdr><Stmt><Id>1</Id><Acct><Id><IBAN>IE29AIBK93115212345678</IBAN></Id></Acct>"
        '<Ntry><Amt Ccy="EUR">191.27</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-11-20</Dt></BookgDt><NtryDtls><TxDtls>'
        "<RltdPties><Dbtr><Nm>Dublin Bakery</Nm></Dbtr><DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct></RltdPties>"
        f"<RmtInf><Ustrd>{reference}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>"
    )
    imported = await live.client.post("/v1/bank-statements", headers=tenant_headers(tenant), content=statement.encode())
    assert (imported.status_code, imported.json()["matched"]) == (201, 1), imported.text
    payment_id = imported.json()["lines"][0]["payment_id"]
    payer = (await live.client.get(f"/v1/accounts/{buyer(tenant)}/bank-account", headers=tenant_headers(tenant))).json()
    assert (payer["name"], payer["iban"]) == ("Dublin Bakery", "DE89370400440532013000")
    bad = await live.client.put("/v1/bank-account", headers=tenant_headers(tenant), json={"name": "Cloudy Ltd", "iban": "IE29AIBK93115212345679"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_bank_account")

    note = credit_note(tenant, invoice_id, "64.58", "original_method")
    await publish_events(kafka_bootstrap, as_event(tenant, note, str(uuid.uuid4())))

    async def waiting() -> bool:
        refunds = (await attempts(live, tenant, invoice_id))["refunds"]
        return bool(refunds) and "waiting for the seller's bank account" in (refunds[0]["reason"] or "")

    await eventually(waiting)  # no account to pay from yet: the refund waits, and says why
    seller = {"name": "Cloudy Ltd", "iban": "IE29 AIBK 9311 5212 3456 78", "bic": "AIBKIE2D"}
    assert (await live.client.put("/v1/bank-account", headers=tenant_headers(tenant), json=seller)).json()["iban"] == "IE29AIBK93115212345678"

    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.refunded")) >= 1)
    refunded = of_type(events, "payment.refunded")[0].data
    assert (refunded.amount, refunded.payment_id, refunded.method, refunded.provider) == (
        Money.of("64.58", "EUR"),
        payment_id,
        "bank_transfer",
        "sepa_credit_transfer",
    )
    listed = (await attempts(live, tenant, invoice_id))["refunds"]
    assert listed[0]["file_url"] == f"/v1/refund-files/{refunded.provider_ref}"
    r = await live.client.get(listed[0]["file_url"], headers=tenant_headers(tenant))
    assert (r.status_code, r.headers["content-type"]) == (200, "application/xml")
    root = ET.fromstring(r.content)
    found = {
        path: root.findtext(path, namespaces=PAIN_001)
        for path in (
            ".//p:GrpHdr/p:CtrlSum",
            ".//p:DbtrAcct/p:Id/p:IBAN",
            ".//p:CdtrAcct/p:Id/p:IBAN",
            ".//p:Cdtr/p:Nm",
            ".//p:RmtInf/p:Ustrd",
        )
    }
    assert list(found.values()) == ["64.58", "IE29AIBK93115212345678", "DE89370400440532013000", "Dublin Bakery", f"Refund {note.number} for invoice CL-0001"]
    amount = root.find(".//p:InstdAmt", PAIN_001)
    assert amount is not None and amount.attrib["Ccy"] == "EUR"
    assert (await live.client.get(listed[0]["file_url"], headers=tenant_headers(f"other-{tenant}"))).status_code == 404
    after = await invoice(live, tenant, invoice_id)
    assert (after["amount_received"], after["amount_credited"], after["amount_open"]) == ("126.69", "64.58", "0.00")
    assert Decimal(after["total"]) == Decimal("191.27")


async def test_a_collected_direct_debit_is_refunded_through_gocardless_to_the_cent(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    gc, invoice_id, payment_ref = await collected_by_direct_debit(live, kafka_bootstrap, tenant, "AC-0001", "328.27")

    note = credit_note(tenant, invoice_id, "39.87", "original_method")  # worked example B's prorated 4 users
    await publish_events(kafka_bootstrap, as_event(tenant, note, str(uuid.uuid4())))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.refunded")) >= 1)
    refunded = of_type(events, "payment.refunded")[0].data
    assert (refunded.amount, refunded.method, refunded.provider, refunded.payment_id) == (
        Money.of("39.87", "EUR"),
        "direct_debit",
        "gocardless",
        f"{invoice_id}:1",
    )
    made = (await asyncio.to_thread(gc.refunds.list, {"payment": payment_ref})).records
    assert [(r.id, r.amount, r.currency) for r in made] == [(refunded.provider_ref, 3987, "EUR")]
    after = await invoice(live, tenant, invoice_id)
    assert (after["amount_received"], after["amount_credited"], after["amount_open"]) == ("288.40", "39.87", "0.00")
