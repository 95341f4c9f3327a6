"""The buyer's own payment methods and payments, through keys restricted to its account (as the
customer portal holds them), with the services verifying API keys: cards saved on Stripe
Checkout's hosted page (setup mode) and mandates on GoCardless's hosted flow, both in the
sandboxes, confirmed through the official SDKs; a default chosen; a method removed at the
provider; another buyer's ids answer 404."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import gocardless_pro
import httpx
import pytest
import stripe

from billing_events import CollectingMethodChanged, MandateChanged, Party, account_id, new_event
from billing_events.topics import PAYMENTS
from billing_runtime.auth import Scope, issue
from billing_runtime.db import create_engine
from billing_runtime.testing import api_key_headers, eventually, publish_events, read_events

from .conftest import Live
from .test_payments_api import invoice_issued

pytestmark = pytest.mark.asyncio(loop_scope="module")
BACK = "https://portal.example/p/t/payment-methods/return"


@pytest.fixture(scope="module")
def live_settings() -> dict[str, Any]:
    return {"auth_mode": "api_key"}


class Keys:
    def __init__(self, live: Live, database_url: str, bootstrap: str) -> None:
        self.live, self.database_url, self.bootstrap = live, database_url, bootstrap

    async def issue(self, tenant: str, scope: Scope, account: str | None = None) -> dict[str, str]:
        engine = create_engine(self.database_url, pool_size=1)
        try:
            key = await issue(engine, self.bootstrap, tenant, scope, label="test", now=datetime.now(UTC), account_id=account)
        finally:
            await engine.dispose()
        return api_key_headers(key.key)

    async def call(self, method: str, path: str, who: dict[str, str], body: Any = None) -> httpx.Response:
        """A request, retried while the service has not learnt the new key yet (the key topic)."""

        async def known() -> httpx.Response | None:
            r = await self.live.client.request(method, path, headers=who, json=body)
            return None if r.status_code == 401 and r.json().get("code") == "api_key_invalid" else r

        return await eventually(known, "the service to know the new key", 30, interval=0.2)


@pytest.fixture(scope="module")
def keys(live: Live, migrated: str, kafka_bootstrap: str) -> Keys:
    return Keys(live, migrated, kafka_bootstrap)


async def setup_tenant(live: Live, keys: Keys) -> tuple[str, dict[str, str], stripe.StripeClient, gocardless_pro.Client]:
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    admin = await keys.issue(tenant, "admin")
    sc = stripe.StripeClient(f"sk_test_{tenant}", base_addresses={"api": live.stripe.url}, max_network_retries=0)
    endpoint = await asyncio.to_thread(sc.v1.webhook_endpoints.create, {"url": f"{live.url}/v1/webhooks/stripe/{tenant}", "enabled_events": ["*"]})
    r = await keys.call("PUT", "/v1/providers/stripe", admin, {"api_key": f"sk_test_{tenant}", "webhook_secret": endpoint.secret})
    assert r.status_code == 200, r.text
    token, secret = f"sandbox_{tenant}", f"gc-secret-{uuid.uuid4().hex}"
    hook = {"url": f"{live.url}/v1/webhooks/gocardless/{tenant}", "secret": secret}
    httpx.post(f"{live.gocardless.url}/_sandbox/webhook_endpoints", json=hook, headers={"Authorization": f"Bearer {token}"})
    r = await keys.call("PUT", "/v1/providers/gocardless", admin, {"api_key": token, "webhook_secret": secret})
    assert r.status_code == 200, r.text
    return tenant, admin, sc, gocardless_pro.Client(access_token=token, base_url=live.gocardless.url)


async def save_card_at_checkout(keys: Keys, who: dict[str, str], account: str, method_id: str, number: str = "4242 4242 4242 4242") -> dict[str, Any]:
    body = {"id": method_id, "type": "card", "email": "ap@alpha.example", "name": "Alpha Dental", "redirect_uri": f"{BACK}/{method_id}"}
    r = await keys.call("POST", f"/v1/accounts/{account}/payment-methods", who, body)
    assert r.status_code == 201, r.text
    pending = r.json()
    assert pending["status"] == "pending" and pending["client_secret"] is None and "/checkout/cs_test_" in pending["setup_url"]
    assert pending["is_default"] is False
    # The buyer's browser on Stripe's hosted page: the card number goes there, never to us.
    done = await asyncio.to_thread(httpx.post, pending["setup_url"], data={"cardnumber": number, "exp": "12/34", "cvc": "123", "name": "Ann"})
    assert done.status_code == 303 and done.headers["location"] == f"{BACK}/{method_id}"
    r = await keys.call("POST", f"/v1/accounts/{account}/payment-methods/{method_id}/confirm", who)
    assert r.status_code == 200, r.text
    return dict(r.json())


def collecting(events: list[Any], account: str) -> list[CollectingMethodChanged]:
    """The buyer's CollectingMethodChanged, in order, one per run of the same method (a card's
    webhook and its confirmation may each announce it)."""
    runs: list[CollectingMethodChanged] = []
    for e in events:
        if isinstance(e.data, CollectingMethodChanged) and e.data.account_id == account:
            if runs and runs[-1].method_id == e.data.method_id:
                runs[-1] = e.data
            else:
                runs.append(e.data)
    return runs


async def test_a_buyer_saves_cards_at_checkout_chooses_the_default_and_removes_one(live: Live, keys: Keys, kafka_bootstrap: str) -> None:
    tenant, admin, sc, _ = await setup_tenant(live, keys)
    alpha, beta = account_id(tenant, "alpha"), account_id(tenant, "beta")
    mine, theirs = await keys.issue(tenant, "write", alpha), await keys.issue(tenant, "write", beta)
    viewer = await keys.issue(tenant, "read", alpha)

    first = await save_card_at_checkout(keys, mine, alpha, "card-a")
    assert (first["status"], first["is_default"], first["setup_url"]) == ("active", True, None)
    assert (first["details"]["brand"], first["details"]["last4"], first["details"]["exp_year"]) == ("visa", "4242", 2034)
    again = await keys.call("POST", f"/v1/accounts/{alpha}/payment-methods/card-a/confirm", mine)
    assert again.json() == first  # asking again answers the same
    second = await save_card_at_checkout(keys, mine, alpha, "card-b", "5555 5555 5555 4444")
    # The card saved last is the default (collection has always used the newest); the first is not any more.
    assert (second["status"], second["is_default"], second["details"]["brand"]) == ("active", True, "mastercard")

    # Another buyer's ids, by its own account or by alpha's: 404, and nothing changes.
    for method, path, code in (
        ("GET", f"/v1/accounts/{beta}/payment-methods/card-a", "payment_method_not_found"),
        ("DELETE", f"/v1/accounts/{beta}/payment-methods/card-a", "payment_method_not_found"),
        ("POST", f"/v1/accounts/{beta}/payment-methods/card-a/confirm", "payment_method_not_found"),
        ("GET", f"/v1/accounts/{alpha}/payment-methods/card-a", "account_not_found"),
        ("GET", f"/v1/accounts/{alpha}/payment-methods", "account_not_found"),
        ("DELETE", f"/v1/accounts/{alpha}/payment-methods/card-a", "account_not_found"),
    ):
        r = await keys.call(method, path, theirs)
        assert (r.status_code, r.json()["code"]) == (404, code), (method, path)
    r = await keys.call("PUT", f"/v1/accounts/{beta}/default-payment-method", theirs, {"method_id": "card-a"})
    assert (r.status_code, r.json()["code"]) == (404, "payment_method_not_found")
    # A read-only key of the buyer may look, not change; a restricted key reaches no seller route.
    r = await keys.call("PUT", f"/v1/accounts/{alpha}/default-payment-method", viewer, {"method_id": "card-a"})
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    assert (await keys.call("GET", f"/v1/accounts/{alpha}/payment-methods", viewer)).status_code == 200
    r = await keys.call("GET", "/v1/bank-statements/unmatched", mine)
    assert (r.status_code, r.json()["code"]) == (403, "account_restricted")

    r = await keys.call("PUT", f"/v1/accounts/{alpha}/default-payment-method", mine, {"method_id": "card-a"})
    assert r.status_code == 200 and r.json()["is_default"] is True
    listed = (await keys.call("GET", f"/v1/accounts/{alpha}/payment-methods", mine)).json()["items"]
    assert {m["method_id"]: m["is_default"] for m in listed} == {"card-a": True, "card-b": False}
    r = await keys.call("PUT", f"/v1/accounts/{alpha}/default-payment-method", mine, {"method_id": "card-b"})
    assert r.json()["is_default"] is True  # and back: the one the buyer is removing next

    removed = await keys.call("DELETE", f"/v1/accounts/{alpha}/payment-methods/card-b", mine)
    assert removed.status_code == 200 and removed.json()["removed_at"] and removed.json()["status"] == "cancelled"
    assert (await keys.call("DELETE", f"/v1/accounts/{alpha}/payment-methods/card-b", mine)).json() == removed.json()
    pm = await asyncio.to_thread(sc.v1.payment_methods.retrieve, second["method_ref"])
    assert pm.customer is None  # detached at Stripe
    listed = (await keys.call("GET", f"/v1/accounts/{alpha}/payment-methods", mine)).json()["items"]
    assert [(m["method_id"], m["is_default"]) for m in listed] == [("card-a", True)]  # the remaining card is the default again
    r = await keys.call("PUT", f"/v1/accounts/{alpha}/default-payment-method", mine, {"method_id": "card-b"})
    assert (r.status_code, r.json()["code"]) == (404, "payment_method_not_found")
    # The partner's tenant-wide key sees the buyer's methods too.
    assert [m["method_id"] for m in (await keys.call("GET", f"/v1/accounts/{alpha}/payment-methods", admin)).json()["items"]] == ["card-a"]

    # Each change of the card collection uses was announced, with what Stripe shows of the card
    # (invoicing prints "Paid by card ending 4242"): saved a, saved b, chose a, chose b, removed b.
    expected = ["card-a", "card-b", "card-a", "card-b", "card-a"]
    events = await read_events(kafka_bootstrap, PAYMENTS.name, until=lambda es: len(collecting(es, alpha)) >= 5, match=lambda e: e.tenant == tenant)
    runs = collecting(events, alpha)
    assert [c.method_id for c in runs] == expected
    assert [(c.method, c.provider, c.card_brand, c.card_last4) for c in runs[:2]] == [
        ("card", "stripe", "visa", "4242"),
        ("card", "stripe", "mastercard", "4444"),
    ]
    assert (runs[-1].card_brand, runs[-1].card_last4, runs[-1].card_exp_month, runs[-1].card_exp_year, runs[-1].mandate_id) == ("visa", "4242", 12, 2034, None)
    assert not collecting(events, beta)


async def test_a_declined_card_stays_pending_and_the_default_cannot_be_a_pending_one(live: Live, keys: Keys) -> None:
    tenant, _, _, _ = await setup_tenant(live, keys)
    alpha = account_id(tenant, "alpha")
    mine = await keys.issue(tenant, "write", alpha)
    body = {"id": "card-x", "type": "card", "redirect_uri": f"{BACK}/card-x"}
    pending = (await keys.call("POST", f"/v1/accounts/{alpha}/payment-methods", mine, body)).json()
    declined = await asyncio.to_thread(httpx.post, pending["setup_url"], data={"cardnumber": "4000000000000002", "exp": "12/34", "cvc": "1"})
    assert declined.status_code == 402 and "declined" in declined.text
    confirmed = await keys.call("POST", f"/v1/accounts/{alpha}/payment-methods/card-x/confirm", mine)
    assert confirmed.json()["status"] == "pending" and confirmed.json()["setup_url"] == pending["setup_url"]
    assert confirmed.json()["is_default"] is False
    r = await keys.call("PUT", f"/v1/accounts/{alpha}/default-payment-method", mine, {"method_id": "card-x"})
    assert (r.status_code, r.json()["code"]) == (409, "payment_method_not_active")


async def test_a_card_saved_by_the_webhook_alone_is_announced_with_its_brand_and_digits(live: Live, keys: Keys, kafka_bootstrap: str) -> None:
    """The buyer's browser never comes back to `…/confirm`: Stripe's `setup_intent.succeeded`
    saves the card, and payments reads its PaymentMethod (brand, last four, expiry) through the SDK
    before applying it, so the first and only announcement names the card ("Visa card ending 4242"
    on the invoices), not "the card on file"."""
    tenant, _, _, _ = await setup_tenant(live, keys)
    alpha = account_id(tenant, "alpha")
    mine = await keys.issue(tenant, "write", alpha)
    body = {"id": "card-w", "type": "card", "email": "ap@alpha.example", "redirect_uri": f"{BACK}/card-w"}
    pending = (await keys.call("POST", f"/v1/accounts/{alpha}/payment-methods", mine, body)).json()
    done = await asyncio.to_thread(httpx.post, pending["setup_url"], data={"cardnumber": "4242 4242 4242 4242", "exp": "12/34", "cvc": "123"})
    assert done.status_code == 303  # and the browser goes elsewhere: no confirm

    async def saved() -> dict[str, Any] | None:
        method = (await keys.call("GET", f"/v1/accounts/{alpha}/payment-methods/card-w", mine)).json()
        return dict(method) if method["status"] == "active" else None

    method = await eventually(saved, "the webhook to save the card")
    assert {k: method["details"].get(k) for k in ("brand", "last4", "exp_month", "exp_year")} == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
    }
    events = await read_events(kafka_bootstrap, PAYMENTS.name, until=lambda es: len(collecting(es, alpha)) >= 1, match=lambda e: e.tenant == tenant)
    announced = [e.data for e in events if isinstance(e.data, CollectingMethodChanged) and e.data.account_id == alpha]
    assert [(c.method_id, c.card_brand, c.card_last4, c.card_exp_month, c.card_exp_year) for c in announced] == [("card-w", "visa", "4242", 12, 2034)]


async def test_a_mandate_set_up_on_the_hosted_flow_then_removed_is_cancelled_at_gocardless(live: Live, keys: Keys, kafka_bootstrap: str) -> None:
    tenant, _, _, gc = await setup_tenant(live, keys)
    alpha = account_id(tenant, "alpha")
    mine = await keys.issue(tenant, "write", alpha)
    body = {"id": "dd-1", "type": "direct_debit", "email": "ap@alpha.example", "name": "Alpha Dental", "currency": "EUR", "redirect_uri": f"{BACK}/dd-1"}
    r = await keys.call("POST", f"/v1/accounts/{alpha}/payment-methods", mine, body)
    assert r.status_code == 201 and r.json()["setup_url"] == r.json()["authorisation_url"]
    async with httpx.AsyncClient() as browser:
        assert "Alpha Dental" in (await browser.get(r.json()["setup_url"])).text
        done = await browser.post(r.json()["setup_url"], data={"account_holder_name": "Alpha Dental", "iban": "DE89 3704 0044 0532 0130 00"})
    assert done.status_code == 303 and done.headers["location"] == f"{BACK}/dd-1"
    method = (await keys.call("POST", f"/v1/accounts/{alpha}/payment-methods/dd-1/confirm", mine)).json()
    assert (method["status"], method["is_default"], method["method_ref"][:2]) == ("active", True, "MD")

    removed = (await keys.call("DELETE", f"/v1/accounts/{alpha}/payment-methods/dd-1", mine)).json()
    assert removed["status"] == "cancelled" and removed["is_default"] is False
    assert (await asyncio.to_thread(gc.mandates.get, method["method_ref"])).status == "cancelled"

    def cancelled(events: list[Any]) -> bool:
        return any(isinstance(e.data, MandateChanged) and e.data.status == "cancelled" for e in events)

    events = await read_events(kafka_bootstrap, PAYMENTS.name, until=cancelled, match=lambda e: e.tenant == tenant)
    changes = [e.data.status for e in events if isinstance(e.data, MandateChanged)]
    assert changes[-1] == "cancelled" and "active" in changes
    # Collection used the mandate once it was active, and nothing once it was removed.
    events = await read_events(kafka_bootstrap, PAYMENTS.name, until=lambda es: len(collecting(es, alpha)) >= 2, match=lambda e: e.tenant == tenant)
    runs = collecting(events, alpha)
    assert [(c.method_id, c.method, c.mandate_id, c.card_last4) for c in runs] == [
        ("dd-1", "direct_debit", method["method_ref"], None),
        (None, None, None, None),
    ]


async def test_a_buyer_lists_its_own_payments_and_reads_their_receipts(live: Live, keys: Keys, kafka_bootstrap: str) -> None:
    tenant, admin, _, _ = await setup_tenant(live, keys)
    alpha, beta = account_id(tenant, "alpha"), account_id(tenant, "beta")
    mine = await keys.issue(tenant, "read", alpha)
    invoices = {}
    for buyer, number in ((alpha, "NW-1"), (beta, "NW-2")):
        event = invoice_issued(tenant, str(uuid.uuid4()), number, total="100.00", currency="EUR")
        data = event.data.model_copy(update={"buyer": Party(account_id=buyer, name=buyer, country="IE", email="ap@x.example")})
        await publish_events(kafka_bootstrap, new_event(data, source="invoicing", tenant=tenant, event_id=str(uuid.uuid4()), subject=data.invoice_id))
        invoices[buyer] = data.invoice_id

    async def known() -> bool:
        answers = [await keys.call("GET", f"/v1/invoices/{i}", admin) for i in invoices.values()]
        return all(r.status_code == 200 for r in answers)

    await eventually(known)
    for buyer, pid in ((alpha, "bank-a"), (beta, "bank-b")):
        body = {"id": pid, "invoice_id": invoices[buyer], "amount": "40.00", "currency": "EUR", "received_on": "2026-11-20", "reference": "r"}
        assert (await keys.call("POST", "/v1/payments", admin, body)).status_code == 201
    listed = (await keys.call("GET", "/v1/payments", mine)).json()["items"]
    assert [(p["payment_id"], p["account_id"], p["provider"], p["amount"]) for p in listed] == [("bank-a", alpha, "bank_transfer", "40.00")]
    asked = await keys.call("GET", f"/v1/payments?account_id={beta}", mine)
    assert (asked.status_code, asked.json()["code"]) == (404, "account_not_found")
    assert (await keys.call("GET", "/v1/payments/bank-b", mine)).status_code == 404
    assert (await keys.call("GET", "/v1/payments/bank-a", mine)).json()["invoice_id"] == invoices[alpha]
    assert {p["payment_id"] for p in (await keys.call("GET", "/v1/payments", admin)).json()["items"]} == {"bank-a", "bank-b"}
