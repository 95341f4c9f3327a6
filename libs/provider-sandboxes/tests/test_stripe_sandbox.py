"""The Stripe sandbox through the official `stripe` SDK, over real HTTP."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import stripe
from stripe.params import PaymentIntentCreateParams

from billing_runtime.testing import eventually_sync
from provider_sandboxes import SandboxServer, stripe_signature
from provider_sandboxes.stripe import decode_form

from .conftest import Receiver


def client(server: SandboxServer, key: str | None = None, *, timeout: float | None = None) -> stripe.StripeClient:
    """A client of a new account (or of `key`'s); with `timeout`, one that gives up on an answer after that many seconds."""
    http = None if timeout is None else stripe.RequestsClient(timeout=timeout)
    return stripe.StripeClient(key or f"sk_test_{uuid.uuid4().hex}", base_addresses={"api": server.url}, max_network_retries=0, http_client=http)


def off_session_visa(customer_id: str) -> PaymentIntentCreateParams:
    """A charge of 5.00 USD to the customer's Visa test card, confirmed at once, off session."""
    return {"amount": 500, "currency": "usd", "customer": customer_id, "payment_method": "pm_card_visa", "off_session": True, "confirm": True}


def test_form_decoding_nests_like_stripe() -> None:
    assert decode_form(b"a[b]=1&c[0]=x&c[1]=y&d=&metadata[invoice_id]=inv-1") == {
        "a": {"b": "1"},
        "c": ["x", "y"],
        "d": "",
        "metadata": {"invoice_id": "inv-1"},
    }


def test_save_a_card_then_charge_it_off_session(stripe_sandbox: SandboxServer, receiver: Receiver) -> None:
    sc = client(stripe_sandbox)
    endpoint = sc.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["setup_intent.succeeded", "payment_intent.succeeded"]})
    customer = sc.v1.customers.create({"email": "ap@contoso.example", "name": "Contoso Dental"})
    # payment_method_types: sent as older integrations do; this SDK's params no longer declare it
    setup = sc.v1.setup_intents.create({"customer": customer.id, "usage": "off_session", "payment_method_types": ["card"]})  # type: ignore[arg-type]  # see above
    assert setup.status == "requires_payment_method" and setup.client_secret and setup.client_secret.startswith(setup.id)
    confirmed = sc.v1.setup_intents.confirm(setup.id, {"payment_method": "pm_card_visa"})
    assert confirmed.status == "succeeded" and isinstance(confirmed.payment_method, str)
    pm = sc.v1.payment_methods.retrieve(confirmed.payment_method)
    assert pm.card and (pm.customer, pm.card.last4) == (customer.id, "4242")

    intent = sc.v1.payment_intents.create(
        {
            "amount": 151625,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm.id,
            "off_session": True,
            "confirm": True,
            "metadata": {"invoice_id": "inv-1"},
        },
        {"idempotency_key": "inv-1:1"},
    )
    assert (intent.status, intent.amount_received, intent.metadata["invoice_id"]) == ("succeeded", 151625, "inv-1")

    hooks = receiver.wait_for(2)
    types = []
    for body, headers in hooks:
        event = sc.construct_event(body, headers["stripe-signature"], endpoint.secret, tolerance=300)
        types.append(event.type)
    assert sorted(types) == ["payment_intent.succeeded", "setup_intent.succeeded"]
    with pytest.raises(stripe.SignatureVerificationError):
        sc.construct_event(hooks[0][0], hooks[0][1]["stripe-signature"], "whsec_wrong", tolerance=300)


@pytest.mark.parametrize(
    ("card", "code", "decline_code"),
    [
        ("4000000000000002", "card_declined", "generic_decline"),
        ("4000000000009995", "card_declined", "insufficient_funds"),
        ("4000000000000341", "card_declined", "generic_decline"),
        ("4000002760003184", "authentication_required", "authentication_required"),
    ],
)
def test_documented_test_cards_decline_when_charged(stripe_sandbox: SandboxServer, card: str, code: str, decline_code: str) -> None:
    sc = client(stripe_sandbox)
    customer = sc.v1.customers.create({"email": "x@example.com"})
    pm = sc.v1.payment_methods.create({"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    sc.v1.payment_methods.attach(pm.id, {"customer": customer.id})
    with pytest.raises(stripe.CardError) as err:
        sc.v1.payment_intents.create(
            {"amount": 1000, "currency": "eur", "customer": customer.id, "payment_method": pm.id, "off_session": True, "confirm": True}
        )
    assert err.value.error and (err.value.code, err.value.error.decline_code) == (code, decline_code)
    failed = err.value.error.payment_intent
    assert failed and failed.last_payment_error and failed.status == "requires_payment_method" and failed.last_payment_error.decline_code == decline_code
    listed = sc.v1.payment_intents.list({"customer": customer.id})
    assert [i.id for i in listed.data] == [failed.id]


def test_a_declined_card_cannot_be_saved(stripe_sandbox: SandboxServer) -> None:
    sc = client(stripe_sandbox)
    customer = sc.v1.customers.create({"email": "x@example.com"})
    setup = sc.v1.setup_intents.create({"customer": customer.id, "usage": "off_session"})
    with pytest.raises(stripe.CardError) as err:
        sc.v1.setup_intents.confirm(setup.id, {"payment_method": "pm_card_chargeDeclined"})
    assert err.value.code == "card_declined"
    assert sc.v1.setup_intents.retrieve(setup.id).status == "requires_payment_method"


def test_idempotency_key_replays_the_first_answer_and_refuses_other_parameters(stripe_sandbox: SandboxServer) -> None:
    sc = client(stripe_sandbox)
    customer = sc.v1.customers.create({"email": "x@example.com"})
    params = off_session_visa(customer.id)
    first = sc.v1.payment_intents.create(params, {"idempotency_key": "k-1"})
    again = sc.v1.payment_intents.create(params, {"idempotency_key": "k-1"})
    assert again.id == first.id
    with pytest.raises(stripe.IdempotencyError):
        sc.v1.payment_intents.create({**params, "amount": 600}, {"idempotency_key": "k-1"})
    assert len(sc.v1.payment_intents.list({"customer": customer.id}).data) == 1


def test_a_lost_response_still_charged_once(stripe_sandbox: SandboxServer) -> None:
    sc = client(stripe_sandbox)
    customer = sc.v1.customers.create({"email": "x@example.com"})
    httpx.post(f"{stripe_sandbox.url}/_sandbox/faults", json={"method": "POST", "path_prefix": "/v1/payment_intents", "mode": "error_after_commit"})
    params = off_session_visa(customer.id)
    with pytest.raises(stripe.APIError):
        sc.v1.payment_intents.create(params, {"idempotency_key": "lost-1"})
    replay = sc.v1.payment_intents.create(params, {"idempotency_key": "lost-1"})
    assert replay.status == "succeeded"
    assert [i.id for i in sc.v1.payment_intents.list({"customer": customer.id}).data] == [replay.id]


def test_refunds_up_to_the_amount_charged(stripe_sandbox: SandboxServer) -> None:
    sc = client(stripe_sandbox)
    intent = sc.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    part = sc.v1.refunds.create({"payment_intent": intent.id, "amount": 400})
    assert (part.status, part.amount) == ("succeeded", 400)
    with pytest.raises(stripe.InvalidRequestError) as err:
        sc.v1.refunds.create({"payment_intent": intent.id, "amount": 700})
    assert err.value.code == "amount_too_large"
    rest = sc.v1.refunds.create({"payment_intent": intent.id})
    assert rest.amount == 600


def test_accounts_are_apart_and_keys_are_checked(stripe_sandbox: SandboxServer) -> None:
    mine, theirs = client(stripe_sandbox), client(stripe_sandbox)
    customer = mine.v1.customers.create({"email": "x@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        theirs.v1.customers.retrieve(customer.id)
    with pytest.raises(stripe.AuthenticationError):
        client(stripe_sandbox, key="sk_live_nope").v1.customers.create({"email": "x@example.com"})


def test_signature_is_the_documented_one() -> None:
    body = json.dumps({"id": "evt_1"}).encode()
    header = stripe_signature(body, "whsec_abc", timestamp=1700000000)
    assert header.startswith("t=1700000000,v1=")
    event = stripe.Webhook.construct_event(body, stripe_signature(body, "whsec_abc"), "whsec_abc", tolerance=300)
    assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_abc", tolerance=300)  # stale


def _charge(sc: stripe.StripeClient, key: str) -> stripe.PaymentIntent:
    customer = sc.v1.customers.create({"email": "x@example.com"})
    params = off_session_visa(customer.id)
    return sc.v1.payment_intents.create(params, {"idempotency_key": key})


def _fault(server: SandboxServer, api_key: str, **fault: object) -> None:
    r = httpx.post(f"{server.url}/_sandbox/faults", json=fault, headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 201, r.text


def _types(receiver: Receiver, count: int) -> list[tuple[str, str]]:
    return [(e["type"], e["id"]) for e in (json.loads(body) for body, _ in receiver.wait_for(count))]


def test_an_answer_after_n_seconds_comes_after_the_charge(stripe_sandbox: SandboxServer) -> None:
    key = f"sk_test_{uuid.uuid4().hex}"
    sc = client(stripe_sandbox, key)
    _fault(stripe_sandbox, key, method="POST", path_prefix="/v1/payment_intents", mode="delay_after_commit", seconds=1.5)
    impatient = client(stripe_sandbox, key, timeout=0.5)
    with pytest.raises(stripe.APIConnectionError):
        _charge(impatient, "slow-1")
    charged = sc.v1.payment_intents.list({"limit": 10}).data
    assert [i.status for i in charged] == ["succeeded"]


def test_a_fault_set_with_a_key_touches_only_that_account(stripe_sandbox: SandboxServer) -> None:
    mine, theirs = f"sk_test_{uuid.uuid4().hex}", f"sk_test_{uuid.uuid4().hex}"
    _fault(stripe_sandbox, mine, method="POST", path_prefix="/v1/payment_intents", mode="error_before")
    assert _charge(client(stripe_sandbox, theirs), "k").status == "succeeded"
    with pytest.raises(stripe.APIError):
        _charge(client(stripe_sandbox, mine), "k")


def test_webhook_dropped_delivered_twice_or_out_of_order(stripe_sandbox: SandboxServer, receiver: Receiver) -> None:
    key = f"sk_test_{uuid.uuid4().hex}"
    sc = client(stripe_sandbox, key)
    sc.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["payment_intent.created", "payment_intent.succeeded"]})

    _fault(stripe_sandbox, key, mode="drop_webhook", event_type="payment_intent.succeeded")
    dropped = _charge(sc, "drop")
    assert [t for t, _ in _types(receiver, 1)] == ["payment_intent.created"]
    deliveries = httpx.get(f"{stripe_sandbox.url}/_sandbox/deliveries").json()
    succeeded = [e["id"] for e in sc.v1.events.list({"type": "payment_intent.succeeded", "limit": 100}).data if e.data.object.id == dropped.id]
    assert [(d["fault"], d["attempts"]) for d in deliveries if d["event_ids"] == succeeded] == [("drop_webhook", 0)]

    _fault(stripe_sandbox, key, mode="duplicate_webhook", event_type="payment_intent.succeeded")
    _charge(sc, "twice")
    received = _types(receiver, 4)[1:]
    assert sorted(t for t, _ in received) == ["payment_intent.created", "payment_intent.succeeded", "payment_intent.succeeded"]
    assert len({i for t, i in received if t == "payment_intent.succeeded"}) == 1  # the same event, twice

    _fault(stripe_sandbox, key, mode="reorder_webhooks", event_type="payment_intent.", times=2)
    _charge(sc, "reordered")
    assert [t for t, _ in _types(receiver, 6)[4:]] == ["payment_intent.succeeded", "payment_intent.created"]


def test_faults_are_checked(stripe_sandbox: SandboxServer) -> None:
    assert httpx.post(f"{stripe_sandbox.url}/_sandbox/faults", json={"mode": "error_before"}).status_code == 400
    assert httpx.post(f"{stripe_sandbox.url}/_sandbox/faults", json={"mode": "drop_webhook", "colour": "red"}).status_code == 400


def test_a_key_whose_request_is_still_in_flight_is_a_409_then_replays(stripe_sandbox: SandboxServer) -> None:
    key = f"sk_test_{uuid.uuid4().hex}"
    sc = client(stripe_sandbox, key)
    customer = sc.v1.customers.create({"email": "x@example.com"})
    params = off_session_visa(customer.id)
    _fault(stripe_sandbox, key, method="POST", path_prefix="/v1/payment_intents", mode="delay_before_commit", seconds=1.5)
    impatient = client(stripe_sandbox, key, timeout=0.5)
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.payment_intents.create(params, {"idempotency_key": "in-flight"})
    assert sc.v1.payment_intents.list({"customer": customer.id}).data == []  # nothing made yet
    with pytest.raises(stripe.APIError) as err:  # the SDK has no class of its own for a 409
        sc.v1.payment_intents.create(params, {"idempotency_key": "in-flight"})
    assert err.value.error and (err.value.http_status, err.value.error.type) == (409, "idempotency_error")
    # The first request's intent is committed once its 1.5 s delay is over: waited for, within bounds.
    made = eventually_sync(
        lambda: sc.v1.payment_intents.list({"customer": customer.id}).data, "the delayed request's payment intent to be committed", timeout=30, interval=0.05
    )
    assert sc.v1.payment_intents.create(params, {"idempotency_key": "in-flight"}).id == made[0].id
    assert len(made) == 1


def test_checkout_in_setup_mode_saves_a_card_on_the_hosted_page(stripe_sandbox: SandboxServer, receiver: Receiver) -> None:
    """The merchant creates a Checkout Session (mode=setup) with the SDK, the customer's browser
    opens its `url`, a declined card is shown on the page, 4242… saves, the browser goes to
    `success_url` with the session id, and the merchant reads the outcome back with the SDK."""
    sc = client(stripe_sandbox)
    sc.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["checkout.session.completed"]})
    customer = sc.v1.customers.create({"email": "ap@contoso.example", "name": "Contoso Dental"})
    session = sc.v1.checkout.sessions.create(
        {  # type: ignore[arg-type]  # payment_method_types: not in this SDK's params
            "mode": "setup",
            "customer": customer.id,
            "currency": "eur",
            "payment_method_types": ["card"],
            "success_url": "https://merchant.example/done?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://merchant.example/cancel",
            "setup_intent_data": {"metadata": {"method_id": "pm-1"}},
        }
    )
    assert (session.status, session.setup_intent) == ("open", None) and session.url and session.url.startswith(stripe_sandbox.url)
    with httpx.Client() as browser:
        page = browser.get(session.url)
        assert page.status_code == 200 and "Contoso Dental" in page.text and 'name="cardnumber"' in page.text
        declined = browser.post(session.url, data={"cardnumber": "4000 0000 0000 0002", "exp": "12/34", "cvc": "123", "name": "Ann"})
        assert declined.status_code == 402 and "Your card was declined." in declined.text
        assert sc.v1.checkout.sessions.retrieve(session.id).status == "open"
        saved = browser.post(session.url, data={"cardnumber": "4242 4242 4242 4242", "exp": "12/34", "cvc": "123", "name": "Ann"})
    assert saved.status_code == 303 and saved.headers["location"] == f"https://merchant.example/done?session={session.id}"
    done = sc.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete" and isinstance(done.setup_intent, str)
    intent = sc.v1.setup_intents.retrieve(done.setup_intent)
    assert intent.metadata and (intent.status, intent.metadata["method_id"]) == ("succeeded", "pm-1")
    assert isinstance(intent.payment_method, str)
    pm = sc.v1.payment_methods.retrieve(intent.payment_method)
    assert pm.card and (pm.customer, pm.card.last4, pm.card.brand) == (customer.id, "4242", "visa")
    body, _ = receiver.wait_for(1)[0]
    event = json.loads(body)
    assert (event["type"], event["data"]["object"]["id"]) == ("checkout.session.completed", session.id)
    detached = sc.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    with pytest.raises(stripe.InvalidRequestError):
        sc.v1.payment_methods.detach(pm.id)
