"""Collection against the Stripe and GoCardless sandboxes over real HTTP: payments served on a
real port, the official SDKs pointed at the sandboxes, webhooks signed and posted back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import gocardless_pro
import httpx
import pytest
import stripe

from billing_events import CloudEvent, CreditNoteIssued, Money, PaymentRetryRequested, account_id, new_event
from billing_events.topics import PAYMENTS
from billing_runtime.testing import publish_events, read_events, tenant_headers
from provider_sandboxes import gocardless_signature, stripe_signature

from .conftest import Live
from .test_payments_api import eventually, invoice_issued

pytestmark = pytest.mark.asyncio(loop_scope="module")


def buyer(tenant: str) -> str:
    return account_id(tenant, "c-1")


async def payment_events(bootstrap: str, tenant: str, until: Any, timeout: float = 60.0) -> list[CloudEvent[Any]]:
    return await read_events(bootstrap, PAYMENTS.name, until=until, match=lambda e: e.tenant == tenant, timeout=timeout)


def of_type(events: list[CloudEvent[Any]], name: str) -> list[CloudEvent[Any]]:
    return [e for e in events if e.type == f"billing.{name}.v1"]


async def setup_stripe(live: Live, tenant: str, events: list[Any] | None = None) -> tuple[stripe.StripeClient, str]:
    """The partner's own Stripe account, its webhook endpoint pointing at payments, and its
    credentials given to payments."""
    api_key = f"sk_test_{tenant}"
    sc = stripe.StripeClient(api_key, base_addresses={"api": live.stripe.url}, max_network_retries=0)
    endpoint = await asyncio.to_thread(sc.v1.webhook_endpoints.create, {"url": f"{live.url}/v1/webhooks/stripe/{tenant}", "enabled_events": events or ["*"]})
    r = await live.client.put("/v1/providers/stripe", headers=tenant_headers(tenant), json={"api_key": api_key, "webhook_secret": endpoint.secret})
    assert r.status_code == 200, r.text
    assert r.json()["api_key_last4"] == api_key[-4:] and api_key not in r.text
    assert endpoint.secret is not None  # given once, when the endpoint is created
    return sc, endpoint.secret


async def save_card(live: Live, sc: stripe.StripeClient, tenant: str, method_id: str, card: str) -> dict[str, Any]:
    """The buyer's browser confirms the SetupIntent with Stripe.js; the webhook activates the card."""
    r = await live.client.post(
        f"/v1/accounts/{buyer(tenant)}/payment-methods", headers=tenant_headers(tenant), json={"id": method_id, "type": "card", "email": "ap@contoso.example"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    setup_intent = r.json()["client_secret"].split("_secret_")[0]
    await asyncio.to_thread(sc.v1.setup_intents.confirm, setup_intent, {"payment_method": card})

    async def active() -> bool:
        methods = (await live.client.get(f"/v1/accounts/{buyer(tenant)}/payment-methods", headers=tenant_headers(tenant))).json()["items"]
        return any(m["method_id"] == method_id and m["status"] == "active" for m in methods)

    await eventually(active)
    return dict(r.json())


async def attempts(live: Live, tenant: str, invoice_id: str) -> dict[str, Any]:
    """The invoice's attempts; none while payments has not learnt of the invoice (404)."""
    r = await live.client.get(f"/v1/invoices/{invoice_id}/attempts", headers=tenant_headers(tenant))
    if r.status_code == 404:
        assert r.json()["code"] == "invoice_not_found"
        return {"items": [], "refunds": []}
    assert r.status_code == 200, r.text
    return dict(r.json())


async def submitted_attempt(live: Live, tenant: str, invoice_id: str) -> dict[str, Any]:
    """The invoice's first attempt, once payments has submitted it to the provider (its
    `provider_ref` set)."""

    async def submitted() -> bool:
        items = (await attempts(live, tenant, invoice_id))["items"]
        return bool(items) and items[0]["provider_ref"] is not None

    await eventually(submitted)
    return dict((await attempts(live, tenant, invoice_id))["items"][0])


async def events_after_marker(live: Live, kafka_bootstrap: str, tenant: str, invoice_id: str) -> list[CloudEvent[Any]]:
    """Record a marker payment of 0.01 on the invoice, and the seller's payment events up to its
    PaymentSucceeded: an event emitted by anything before it comes before it."""
    r = await live.client.post(
        "/v1/payments",
        headers=tenant_headers(tenant),
        json={"id": "marker", "invoice_id": invoice_id, "amount": "0.01", "currency": "EUR", "received_on": "2026-11-21"},
    )
    assert r.status_code == 201, r.text
    return await payment_events(kafka_bootstrap, tenant, lambda s: any(e.data.payment_id == "marker" for e in of_type(s, "payment.succeeded")))


async def invoice(live: Live, tenant: str, invoice_id: str) -> dict[str, Any]:
    return dict((await live.client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json())


def tenant_id() -> str:
    return f"partner-{uuid.uuid4().hex[:8]}"


async def test_card_on_file_is_charged_on_issue_and_refunded_by_a_credit_note(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, _ = await setup_stripe(live, tenant)
    method = await save_card(live, sc, tenant, "card-1", "pm_card_visa")
    again = await live.client.post(f"/v1/accounts/{buyer(tenant)}/payment-methods", headers=tenant_headers(tenant), json={"id": "card-1", "type": "card"})
    assert again.status_code == 200 and again.json()["client_secret"] == method["client_secret"]

    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0001", total="126.69", currency="EUR"))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.succeeded")) >= 1)
    paid = of_type(events, "payment.succeeded")[0]
    assert (paid.data.method, paid.data.provider, paid.data.amount) == ("card", "stripe", Money.of("126.69", "EUR"))
    assert paid.data.payment_id == f"{invoice_id}:1"

    async def settled() -> bool:
        return (await invoice(live, tenant, invoice_id))["amount_open"] == "0.00"

    await eventually(settled)
    listed = await attempts(live, tenant, invoice_id)
    assert [(a["status"], a["method"]) for a in listed["items"]] == [("succeeded", "card")]
    # Another seller asking for this invoice's attempts learns nothing, not even that it exists.
    foreign = await live.client.get(f"/v1/invoices/{invoice_id}/attempts", headers=tenant_headers(f"other-{tenant}"))
    assert (foreign.status_code, foreign.json()["code"]) == (404, "invoice_not_found")
    customer = (await asyncio.to_thread(sc.v1.payment_intents.list, {"limit": 100})).data
    assert [i.id for i in customer] == [listed["items"][0]["provider_ref"]]
    assert customer[0].amount == 12669 and customer[0].currency == "eur"

    note = CreditNoteIssued(
        credit_note_id=str(uuid.uuid4()),
        number="CN-0001",
        invoice_id=invoice_id,
        invoice_number="CL-0001",
        seller_id=paid.data.seller_id,
        buyer_account_id=buyer(tenant),
        issued_on=date(2026, 11, 25),
        currency="EUR",
        net_total=Money.of("26.69", "EUR"),
        tax_total=Money.of("0.00", "EUR"),
        total=Money.of("26.69", "EUR"),
    )
    await publish_events(kafka_bootstrap, new_event(note, source="invoicing", tenant=tenant, event_id=str(uuid.uuid4())))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.refunded")) >= 1)
    refunded = of_type(events, "payment.refunded")[0]
    assert (refunded.data.amount, refunded.data.payment_id, refunded.data.credit_note_id) == (
        Money.of("26.69", "EUR"),
        f"{invoice_id}:1",
        note.credit_note_id,
    )
    refunds = (await asyncio.to_thread(sc.v1.refunds.list, {"payment_intent": customer[0].id})).data
    assert [r.amount for r in refunds] == [2669]
    after = await invoice(live, tenant, invoice_id)
    assert (after["amount_received"], after["amount_credited"], after["amount_open"]) == ("100.00", "26.69", "0.00")


async def test_declined_card_fails_with_the_reason_and_a_retry_charges_the_new_card(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, _ = await setup_stripe(live, tenant)
    await save_card(live, sc, tenant, "card-poor", "pm_card_chargeDeclinedInsufficientFunds")
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0002", total="206.00", currency="EUR"))
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.failed")) >= 1)
    failed = of_type(events, "payment.failed")[0]
    assert (failed.data.reason_code, failed.data.reason, failed.data.method) == ("insufficient_funds", "Your card has insufficient funds.", "card")

    await save_card(live, sc, tenant, "card-good", "pm_card_visa")
    retry = PaymentRetryRequested(case_id="case-1", invoice_id=invoice_id, seller_id=failed.data.seller_id, account_id=buyer(tenant), attempt=1)
    retry_event = new_event(retry, source="dunning", tenant=tenant, event_id=str(uuid.uuid4()))
    await publish_events(kafka_bootstrap, retry_event, retry_event)  # delivered twice: one attempt
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.succeeded")) >= 1)
    assert of_type(events, "payment.succeeded")[0].data.payment_id == f"{invoice_id}:2"
    listed = await attempts(live, tenant, invoice_id)
    assert [(a["attempt_no"], a["status"], a["reason_code"]) for a in listed["items"]] == [(1, "failed", "insufficient_funds"), (2, "succeeded", None)]


async def test_a_timeout_after_the_provider_charged_does_not_charge_again(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    # No payment webhooks: only the reconciler can find out what happened.
    sc, _ = await setup_stripe(live, tenant, events=["setup_intent.succeeded"])
    await save_card(live, sc, tenant, "card-1", "pm_card_visa")
    fault = {"method": "POST", "path_prefix": "/v1/payment_intents", "mode": "delay_after_commit", "seconds": 5.0}
    assert httpx.post(f"{live.stripe.url}/_sandbox/faults", json=fault).status_code == 201
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0003", total="50.00", currency="EUR"))

    async def unknown_then_settled() -> bool:
        return [a["status"] for a in (await attempts(live, tenant, invoice_id))["items"]] == ["succeeded"]

    await eventually(unknown_then_settled, timeout=90)
    intents = (await asyncio.to_thread(sc.v1.payment_intents.list, {"limit": 100})).data
    assert len(intents) == 1 and intents[0].status == "succeeded"
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.succeeded")) >= 1)
    assert [e.data.payment_id for e in of_type(events, "payment.succeeded")] == [f"{invoice_id}:1"]
    assert (await invoice(live, tenant, invoice_id))["amount_received"] == "50.00"


async def test_forged_stale_or_altered_stripe_webhooks_have_no_effect(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, secret = await setup_stripe(live, tenant, events=["setup_intent.succeeded"])
    await save_card(live, sc, tenant, "card-1", "pm_card_visa")
    # Stripe is down for this charge: the attempt stays unknown while the webhooks are tried.
    httpx.post(f"{live.stripe.url}/_sandbox/faults", json={"method": "POST", "path_prefix": "/v1/payment_intents", "mode": "error_before", "times": 100000})
    try:
        invoice_id = str(uuid.uuid4())
        await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0004", total="75.00", currency="EUR"))

        async def unknown() -> bool:
            return [a["status"] for a in (await attempts(live, tenant, invoice_id))["items"]] == ["unknown"]

        await eventually(unknown)
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": "pi_forged",
                    "object": "payment_intent",
                    "status": "succeeded",
                    "amount": 7500,
                    "currency": "eur",
                    "metadata": {"attempt_id": f"{invoice_id}:1"},
                }
            },
        }
        body = json.dumps(event).encode()
        url = f"/v1/webhooks/stripe/{tenant}"
        forged = [
            (body, stripe_signature(body, "whsec_not_the_secret")),
            (body, stripe_signature(body, secret, timestamp=int(time.time()) - 301)),
            (body.replace(b"7500", b"1"), stripe_signature(body, secret)),
            (body, ""),
        ]
        for payload, signature in forged:
            r = await live.client.post(url, content=payload, headers={"Stripe-Signature": signature, "Content-Type": "application/json"})
            assert (r.status_code, r.json()["code"]) == (400, "invalid_signature")
        assert [a["status"] for a in (await attempts(live, tenant, invoice_id))["items"]] == ["unknown"]
        unknown_seller = await live.client.post("/v1/webhooks/stripe/nobody-here", content=body, headers={"Stripe-Signature": stripe_signature(body, secret)})
        assert unknown_seller.status_code == 404

        genuine = await live.client.post(url, content=body, headers={"Stripe-Signature": stripe_signature(body, secret)})
        assert genuine.json()["effect"] == "succeeded"
        replay = await live.client.post(url, content=body, headers={"Stripe-Signature": stripe_signature(body, secret)})
        assert replay.json()["effect"] == "duplicate"
        assert (await invoice(live, tenant, invoice_id))["amount_received"] == "75.00"
    finally:
        httpx.delete(f"{live.stripe.url}/_sandbox/faults")


async def setup_gocardless(live: Live, tenant: str) -> tuple[gocardless_pro.Client, str, str]:
    token = f"sandbox_{tenant}"
    secret = f"gc-secret-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {token}"}
    httpx.post(f"{live.gocardless.url}/_sandbox/webhook_endpoints", json={"url": f"{live.url}/v1/webhooks/gocardless/{tenant}", "secret": secret}, headers=auth)
    r = await live.client.put("/v1/providers/gocardless", headers=tenant_headers(tenant), json={"api_key": token, "webhook_secret": secret})
    assert r.status_code == 200, r.text
    return gocardless_pro.Client(access_token=token, base_url=live.gocardless.url), token, secret


async def set_up_mandate(live: Live, tenant: str) -> None:
    r = await live.client.post(
        f"/v1/accounts/{buyer(tenant)}/payment-methods",
        headers=tenant_headers(tenant),
        json={"id": "dd-1", "type": "direct_debit", "email": "ap@acme.example", "name": "Acme GmbH", "currency": "EUR"},
    )
    assert r.status_code == 201, r.text
    # The payer opens GoCardless's page and gives their IBAN there, never to us.
    done = await asyncio.to_thread(httpx.post, r.json()["authorisation_url"], json={"iban": "DE89370400440532013000", "account_holder_name": "Acme GmbH"})
    assert done.status_code == 200

    async def active() -> bool:
        methods = (await live.client.get(f"/v1/accounts/{buyer(tenant)}/payment-methods", headers=tenant_headers(tenant))).json()["items"]
        return methods[0]["status"] == "active" and methods[0]["method_ref"] == done.json()["mandate"]

    await eventually(active)


async def gocardless_buyer(live: Live, tenant: str) -> tuple[gocardless_pro.Client, str]:
    """The seller's GoCardless account and its buyer's active mandate; (GoCardless client, token)."""
    gc, token, _ = await setup_gocardless(live, tenant)
    await set_up_mandate(live, tenant)
    return gc, token


async def collected_by_direct_debit(live: Live, kafka_bootstrap: str, tenant: str, number: str, total: str) -> tuple[gocardless_pro.Client, str, str]:
    """A buyer with a mandate, an invoice of `total` EUR debited on issue and confirmed at
    GoCardless, its PaymentSucceeded out; (GoCardless client, invoice id, GoCardless payment id)."""
    gc, _ = await gocardless_buyer(live, tenant)
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, number, total=total, currency="EUR"))
    payment_ref = (await submitted_attempt(live, tenant, invoice_id))["provider_ref"]
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_confirmed", {"links": {"resource": payment_ref}})
    await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.succeeded")) >= 1)
    return gc, invoice_id, payment_ref


async def test_direct_debit_fails_with_the_bank_reason_then_a_retry_is_collected(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    gc, _ = await gocardless_buyer(live, tenant)
    events = await payment_events(kafka_bootstrap, tenant, lambda s: any(e.data.status == "active" for e in of_type(s, "mandate.changed")))
    assert [e.data.status for e in of_type(events, "mandate.changed")][-1] == "active"

    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "AC-0001", total="328.27", currency="EUR"))

    first = await submitted_attempt(live, tenant, invoice_id)
    payment = await asyncio.to_thread(gc.payments.get, first["provider_ref"])
    assert (payment.amount, payment.charge_date, first["charge_on"]) == (32827, "2026-12-05", "2026-12-05")  # collected on the due date
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_failed", {"links": {"resource": payment.id}})
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.failed")) >= 1)
    failed = of_type(events, "payment.failed")[0]
    assert (failed.data.reason_code, failed.data.method, failed.data.provider) == ("insufficient_funds", "direct_debit", "gocardless")

    retry = PaymentRetryRequested(case_id="case-1", invoice_id=invoice_id, seller_id=failed.data.seller_id, account_id=buyer(tenant), attempt=1)
    await publish_events(kafka_bootstrap, new_event(retry, source="dunning", tenant=tenant, event_id=str(uuid.uuid4())))

    async def second_submitted() -> bool:
        items = (await attempts(live, tenant, invoice_id))["items"]
        return len(items) == 2 and items[1]["provider_ref"] is not None

    await eventually(second_submitted)
    second = (await attempts(live, tenant, invoice_id))["items"][1]
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_confirmed", {"links": {"resource": second["provider_ref"]}})
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.succeeded")) >= 1)
    assert of_type(events, "payment.succeeded")[0].data.payment_id == f"{invoice_id}:2"
    assert (await invoice(live, tenant, invoice_id))["amount_open"] == "0.00"


async def test_the_same_gocardless_webhook_ten_times_at_once_has_one_effect(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    gc, token, secret = await setup_gocardless(live, tenant)
    await set_up_mandate(live, tenant)
    # From here the sandbox keeps its webhooks: the test delivers them itself.
    httpx.delete(f"{live.gocardless.url}/_sandbox/webhook_endpoints", headers={"Authorization": f"Bearer {token}"})
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "AC-0002", total="24.72", currency="EUR"))

    payment_id = (await submitted_attempt(live, tenant, invoice_id))["provider_ref"]
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_confirmed", {"links": {"resource": payment_id}})
    confirmed = [e for e in (await asyncio.to_thread(gc.events.list, {"payment": payment_id})).records if e.action == "confirmed"][0]
    body = json.dumps({"events": [confirmed.attributes]}).encode()
    url = f"/v1/webhooks/gocardless/{tenant}"

    for payload, signature in [
        (body, gocardless_signature(body, "wrong")),
        (body.replace(b"confirmed", b"failed"), gocardless_signature(body, secret)),
        (body, ""),
    ]:
        r = await live.client.post(url, content=payload, headers={"Webhook-Signature": signature})
        assert (r.status_code, r.json()["code"]) == (498, "invalid_signature")
    assert (await attempts(live, tenant, invoice_id))["items"][0]["status"] == "processing"  # GoCardless has it, undecided

    signature = gocardless_signature(body, secret)
    answers = await asyncio.gather(*[live.client.post(url, content=body, headers={"Webhook-Signature": signature}) for _ in range(10)])
    effects = sorted(a.json()["received"][confirmed.id] for a in answers)
    assert effects == ["duplicate"] * 9 + ["succeeded"]
    assert (await invoice(live, tenant, invoice_id))["amount_received"] == "24.72"
    # A later marker payment: had a second PaymentSucceeded been emitted, it would come before it.
    events = await events_after_marker(live, kafka_bootstrap, tenant, invoice_id)
    assert [e.data.payment_id for e in of_type(events, "payment.succeeded")] == [f"{invoice_id}:1", "marker"]
    credit = (await live.client.get(f"/v1/accounts/{buyer(tenant)}/credit", headers=tenant_headers(tenant))).json()
    assert credit["credit"] == [{"amount": "0.01", "currency": "EUR"}]
    assert Decimal((await invoice(live, tenant, invoice_id))["overpaid"]) == Decimal("0.01")


async def test_a_collected_direct_debit_returned_late_is_reversed(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    gc, invoice_id, payment_id = await collected_by_direct_debit(live, kafka_bootstrap, tenant, "AC-0003", "103.00")
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_late_failure", {"links": {"resource": payment_id}})
    events = await payment_events(kafka_bootstrap, tenant, lambda s: len(of_type(s, "payment.failed")) >= 1)
    failed = of_type(events, "payment.failed")[0]
    assert (failed.data.payment_id, failed.data.reason_code) == (f"{invoice_id}:1", "refer_to_payer")

    async def reopened() -> bool:
        return (await invoice(live, tenant, invoice_id))["amount_open"] == "103.00"

    await eventually(reopened)
    payment = (await live.client.get(f"/v1/payments/{invoice_id}:1", headers=tenant_headers(tenant))).json()
    assert payment["status"] == "reversed"
