"""The GoCardless sandbox through the official `gocardless-pro` SDK, over real HTTP."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, timedelta
from typing import Any

import gocardless_pro
import httpx
import pytest
from gocardless_pro import errors, webhooks

from provider_sandboxes import SandboxServer, gocardless_signature

from .conftest import Receiver


def client(server: SandboxServer) -> tuple[gocardless_pro.Client, str]:
    token = f"sandbox_{uuid.uuid4().hex}"
    return gocardless_pro.Client(access_token=token, base_url=server.url), token


def mandate_for(server: SandboxServer, gc: gocardless_pro.Client, activate: bool = True) -> tuple[str, str]:
    customer = gc.customers.create(params={"email": "ap@contoso.example", "company_name": "Contoso Dental", "country_code": "DE"})
    brq = gc.billing_requests.create(params={"mandate_request": {"scheme": "sepa_core", "currency": "EUR"}, "links": {"customer": customer.id}})
    flow = gc.billing_request_flows.create(params={"links": {"billing_request": brq.id}})
    done = httpx.post(flow.authorisation_url, json={"iban": "DE89370400440532013000", "account_holder_name": "Contoso", "activate": activate})
    assert done.status_code == 200
    assert gc.billing_requests.get(brq.id).status == "fulfilled"
    return customer.id, done.json()["mandate"]


def test_mandate_payment_and_signed_webhooks(gocardless_sandbox: SandboxServer, receiver: Receiver) -> None:
    gc, token = client(gocardless_sandbox)
    httpx.post(
        f"{gocardless_sandbox.url}/_sandbox/webhook_endpoints", json={"url": receiver.url, "secret": "wh-secret"}, headers={"Authorization": f"Bearer {token}"}
    )
    _, mandate_id = mandate_for(gocardless_sandbox, gc)
    assert gc.mandates.get(mandate_id).status == "active"

    due = date.today() + timedelta(days=10)
    payment = gc.payments.create(
        params={"amount": 12669, "currency": "EUR", "charge_date": due.isoformat(), "links": {"mandate": mandate_id}, "metadata": {"invoice_id": "inv-1"}},
        headers={"Idempotency-Key": "inv-1:1"},
    )
    assert (payment.status, payment.charge_date, payment.amount) == ("pending_submission", due.isoformat(), 12669)
    again = gc.payments.create(
        params={"amount": 12669, "currency": "EUR", "charge_date": due.isoformat(), "links": {"mandate": mandate_id}},
        headers={"Idempotency-Key": "inv-1:1"},
    )
    assert again.id == payment.id  # the SDK follows the 409 to the payment first created

    gc.scenario_simulators.run("payment_failed", params={"links": {"resource": payment.id}})
    assert gc.payments.get(payment.id).status == "failed"

    # created, fulfilled, mandate created/submitted/active, payment created/submitted/failed: how
    # many of them share one webhook is up to the sender, so wait for the failure itself.
    def parsed(hooks: list[tuple[bytes, dict[str, str]]]) -> list[Any]:
        return [e for body, headers in hooks for e in webhooks.parse(body, "wh-secret", headers["webhook-signature"])]

    deadline = time.monotonic() + 30
    while not any(e.resource_type == "payments" and e.action == "failed" for e in parsed(list(receiver.received))):
        assert time.monotonic() < deadline, f"no payment failed webhook in 30 s; got {len(receiver.received)} webhooks"
        time.sleep(0.05)
    hooks = list(receiver.received)
    events = parsed(hooks)
    failed = next(e for e in events if e.resource_type == "payments" and e.action == "failed")
    assert failed.links.payment == payment.id
    assert (failed.details.cause, failed.details.reason_code) == ("insufficient_funds", "AM04")
    assert failed.metadata == {"invoice_id": "inv-1"}
    with pytest.raises(errors.InvalidSignatureError):
        webhooks.parse(hooks[0][0], "other-secret", hooks[0][1]["webhook-signature"])
    assert gc.events.get(failed.id).action == "failed"


def test_confirmed_payments_refund_and_cancelled_mandates_refuse_payments(gocardless_sandbox: SandboxServer) -> None:
    gc, _ = client(gocardless_sandbox)
    _, mandate_id = mandate_for(gocardless_sandbox, gc)
    payment = gc.payments.create(params={"amount": 5000, "currency": "EUR", "links": {"mandate": mandate_id}})
    with pytest.raises(errors.InvalidStateError):
        gc.refunds.create(params={"amount": 100, "links": {"payment": payment.id}})
    gc.scenario_simulators.run("payment_confirmed", params={"links": {"resource": payment.id}})
    refund = gc.refunds.create(params={"amount": 2000, "total_amount_confirmation": 2000, "links": {"payment": payment.id}})
    assert (refund.amount, refund.status) == (2000, "created")
    with pytest.raises(errors.InvalidStateError):
        gc.refunds.create(params={"amount": 3001, "links": {"payment": payment.id}})

    gc.mandates.cancel(mandate_id)
    with pytest.raises(errors.InvalidStateError):
        gc.payments.create(params={"amount": 5000, "currency": "EUR", "links": {"mandate": mandate_id}})


def test_mandate_failed_scenario(gocardless_sandbox: SandboxServer) -> None:
    gc, _ = client(gocardless_sandbox)
    _, mandate_id = mandate_for(gocardless_sandbox, gc, activate=False)
    assert gc.mandates.get(mandate_id).status == "pending_submission"
    gc.scenario_simulators.run("mandate_failed", params={"links": {"resource": mandate_id}})
    assert gc.mandates.get(mandate_id).status == "failed"
    actions = [e.action for e in gc.events.list(params={"mandate": mandate_id}).records]
    assert actions[-2:] == ["submitted", "failed"]


def test_lost_response_is_recovered_by_the_idempotency_key(gocardless_sandbox: SandboxServer) -> None:
    gc, _ = client(gocardless_sandbox)
    _, mandate_id = mandate_for(gocardless_sandbox, gc)
    httpx.post(f"{gocardless_sandbox.url}/_sandbox/faults", json={"method": "POST", "path_prefix": "/payments", "mode": "error_after_commit"})
    params = {"amount": 700, "currency": "EUR", "links": {"mandate": mandate_id}}
    with pytest.raises(errors.GoCardlessInternalError):
        gc.payments.create(params=params, headers={"Idempotency-Key": "lost"})
    again = gc.payments.create(params=params, headers={"Idempotency-Key": "lost"})
    assert [p.id for p in gc.payments.list(params={"mandate": mandate_id}).records] == [again.id]


def test_accounts_are_apart_and_signature_is_hex_hmac(gocardless_sandbox: SandboxServer) -> None:
    mine, _ = client(gocardless_sandbox)
    theirs, _ = client(gocardless_sandbox)
    customer = mine.customers.create(params={"email": "x@example.com"})
    with pytest.raises(errors.InvalidApiUsageError):
        theirs.customers.get(customer.id)
    body = json.dumps({"events": []}).encode()
    assert webhooks.parse(body, "s", gocardless_signature(body, "s")) == []


def _fault(server: SandboxServer, token: str, **fault: object) -> None:
    r = httpx.post(f"{server.url}/_sandbox/faults", json=fault, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text


def test_payment_webhooks_dropped_twice_or_out_of_order(gocardless_sandbox: SandboxServer, receiver: Receiver) -> None:
    gc, token = client(gocardless_sandbox)
    _, mandate_id = mandate_for(gocardless_sandbox, gc)
    httpx.post(f"{gocardless_sandbox.url}/_sandbox/webhook_endpoints", json={"url": receiver.url, "secret": "s"}, headers={"Authorization": f"Bearer {token}"})

    def actions(count: int) -> list[str]:
        return [e.action for body, headers in receiver.wait_for(count) for e in webhooks.parse(body, "s", headers["webhook-signature"])]

    _fault(gocardless_sandbox, token, mode="drop_webhook", event_type="payments.created")
    first = gc.payments.create(params={"amount": 700, "currency": "EUR", "links": {"mandate": mandate_id}})
    _fault(gocardless_sandbox, token, mode="reorder_webhooks", event_type="payments.", times=2)
    gc.scenario_simulators.run("payment_confirmed", params={"links": {"resource": first.id}})
    assert actions(2) == ["confirmed", "submitted"]

    _fault(gocardless_sandbox, token, mode="duplicate_webhook", event_type="payments.created")
    gc.payments.create(params={"amount": 800, "currency": "EUR", "links": {"mandate": mandate_id}})
    assert actions(4)[2:] == ["created", "created"]
    assert [e.action for e in gc.events.list(params={"payment": first.id}).records] == ["created", "submitted", "confirmed"]


def test_the_hosted_billing_request_flow_in_a_browser_redirects_back(gocardless_sandbox: SandboxServer) -> None:
    """The payer opens the flow's `authorisation_url`, gives a bank account on the form, and is
    sent to the merchant's `redirect_uri`; the merchant finds the mandate through the SDK."""
    gc, _ = client(gocardless_sandbox)
    customer = gc.customers.create(params={"email": "ap@contoso.example", "company_name": "Contoso Dental"})
    brq = gc.billing_requests.create(params={"mandate_request": {"scheme": "sepa_core", "currency": "EUR"}, "links": {"customer": customer.id}})
    flow = gc.billing_request_flows.create(params={"links": {"billing_request": brq.id}, "redirect_uri": "https://merchant.example/back"})
    with httpx.Client() as browser:
        page = browser.get(flow.authorisation_url)
        assert page.status_code == 200 and "Contoso Dental" in page.text and 'name="iban"' in page.text
        wrong = browser.post(flow.authorisation_url, data={"account_holder_name": "Contoso", "iban": "12"})
        assert wrong.status_code == 422 and "valid IBAN" in wrong.text
        done = browser.post(flow.authorisation_url, data={"account_holder_name": "Contoso", "iban": "DE89 3704 0044 0532 0130 00"})
        assert done.status_code == 303 and done.headers["location"] == "https://merchant.example/back"
        assert browser.get(flow.authorisation_url).status_code == 404  # used
    found = gc.billing_requests.get(brq.id)
    assert found.status == "fulfilled"
    assert gc.mandates.get(found.links.mandate_request_mandate).status == "active"
