"""A local Stripe: the parts of the v1 API that a merchant saving cards and charging them off
session calls, with Stripe's test cards, idempotency keys and signed webhooks.

Each secret key (`sk_test_...`) is an account of its own, as each partner collects into its own
Stripe account. Amounts are integers in minor units; bodies are form-encoded as the SDK sends them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from provider_sandboxes import hosted
from provider_sandboxes.common import Sandbox, apply_fault_after, bearer, fingerprint, new_id
from provider_sandboxes.signing import stripe_signature

# Stripe's documented test cards: number → (brand, failure at setup, failure when charged).
# A failure is (code, decline_code, message).
Failure = tuple[str, str | None, str]
_GENERIC: Failure = ("card_declined", "generic_decline", "Your card was declined.")
_FUNDS: Failure = ("card_declined", "insufficient_funds", "Your card has insufficient funds.")
_EXPIRED: Failure = ("expired_card", "expired_card", "Your card has expired.")
_CVC: Failure = ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
_PROCESSING: Failure = ("processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit.")
_AUTH: Failure = ("authentication_required", "authentication_required", "Your card was declined. This transaction requires authentication.")

TEST_CARDS: dict[str, tuple[str, Failure | None, Failure | None]] = {
    "4242424242424242": ("visa", None, None),
    "5555555555554444": ("mastercard", None, None),
    "4000000000000002": ("visa", _GENERIC, _GENERIC),
    "4000000000009995": ("visa", None, _FUNDS),
    "4000000000000069": ("visa", _EXPIRED, _EXPIRED),
    "4000000000000127": ("visa", _CVC, _CVC),
    "4000000000000119": ("visa", _PROCESSING, _PROCESSING),
    "4000000000000341": ("visa", None, _GENERIC),
    "4000002760003184": ("visa", None, _AUTH),
}
TEST_PAYMENT_METHODS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_authenticationRequired": "4000002760003184",
}


_LOST = {"error": {"type": "api_error", "message": "sandbox: injected failure"}}


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **{k: v for k, v in extra.items() if v is not None}}}


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: `a[b]=1&c[0]=x` → `{"a": {"b": "1"}, "c": ["x"]}`."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node: Any = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"true", "1"}


@dataclass
class StripeAccount:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotent: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    card_numbers: dict[str, str] = field(default_factory=dict)  # payment method id → test card number
    in_flight: set[str] = field(default_factory=set)  # idempotency keys of requests still being worked on
    setup_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # checkout session → its SetupIntent's metadata


@dataclass
class StripeSandbox(Sandbox):
    accounts: dict[str, StripeAccount] = field(default_factory=dict)
    checkouts: dict[str, str] = field(default_factory=dict)  # checkout session id → the secret key of its account

    def app(self) -> Starlette:
        post = self._mutation
        routes = [
            Route("/v1/customers", post(self.create_customer), methods=["POST"]),
            Route("/v1/customers/{id}", self._get("customer"), methods=["GET"]),
            Route("/v1/payment_methods", post(self.create_payment_method), methods=["POST"]),
            Route("/v1/payment_methods/{id}", self._get("payment_method"), methods=["GET"]),
            Route("/v1/payment_methods/{id}/attach", post(self.attach_payment_method), methods=["POST"]),
            Route("/v1/payment_methods/{id}/detach", post(self.detach_payment_method), methods=["POST"]),
            Route("/v1/checkout/sessions", post(self.create_checkout_session), methods=["POST"]),
            Route("/v1/checkout/sessions/{id}", self._get("checkout.session"), methods=["GET"]),
            Route("/checkout/{id}", self.checkout_page, methods=["GET", "POST"]),
            Route("/v1/setup_intents", post(self.create_setup_intent), methods=["POST"]),
            Route("/v1/setup_intents/{id}", self._get("setup_intent"), methods=["GET"]),
            Route("/v1/setup_intents/{id}/confirm", post(self.confirm_setup_intent), methods=["POST"]),
            Route("/v1/payment_intents", post(self.create_payment_intent), methods=["POST"]),
            Route("/v1/payment_intents", self._list("payment_intent", "customer"), methods=["GET"]),
            Route("/v1/payment_intents/{id}", self._get("payment_intent"), methods=["GET"]),
            Route("/v1/payment_intents/{id}/confirm", post(self.confirm_payment_intent), methods=["POST"]),
            Route("/v1/refunds", post(self.create_refund), methods=["POST"]),
            Route("/v1/refunds", self._list("refund", "payment_intent"), methods=["GET"]),
            Route("/v1/refunds/{id}", self._get("refund"), methods=["GET"]),
            Route("/v1/events", self._list("event", "type"), methods=["GET"]),
            Route("/v1/events/{id}", self._get("event"), methods=["GET"]),
            Route("/v1/webhook_endpoints", post(self.create_webhook_endpoint), methods=["POST"]),
            Route("/_sandbox/faults", self.add_fault, methods=["POST"]),
            Route("/_sandbox/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sandbox/deliveries", self.list_deliveries, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    # --- plumbing -------------------------------------------------------------------------

    def _account(self, request: Request) -> StripeAccount:
        key = bearer(request)
        if not key or not key.startswith(("sk_test_", "rk_test_")):
            raise StripeError(401, "invalid_request_error", "Invalid API Key provided. The sandbox takes test keys (sk_test_...).")
        return self.accounts.setdefault(key, StripeAccount())

    def _mutation(self, handler: Callable[[StripeAccount, dict[str, Any], Request], Awaitable[dict[str, Any]]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                account = self._account(request)
                params = decode_form(await request.body())
                key = request.headers.get("idempotency-key")
                print_ = fingerprint(request.method, request.url.path, params)
                if key and key in account.idempotent:
                    seen, status, body = account.idempotent[key]
                    if seen != print_:
                        raise StripeError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters they were first used with. "
                            f"Try using a key other than '{key}'.",
                        )
                    return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})
                if key and key in account.in_flight:
                    raise StripeError(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this Idempotent Key (that probably means you submitted "
                        "twice, and the other request is still going through). Please retry your request at a later time.",
                    )
                fault = self.take_fault(request)
                if fault is not None and fault.mode == "error_before":
                    return JSONResponse(_LOST, status_code=500)
                if key:
                    account.in_flight.add(key)
                try:
                    if fault is not None and fault.mode == "delay_before_commit":
                        await asyncio.sleep(fault.seconds)
                    try:
                        status, body = 200, await handler(account, params, request)
                    except StripeError as exc:
                        if exc.status >= 500 or exc.status == 401:
                            raise
                        status, body = exc.status, exc.body
                    if key:
                        account.idempotent[key] = (print_, status, body)
                finally:
                    account.in_flight.discard(key or "")
                return await apply_fault_after(fault, JSONResponse(body, status_code=status), _LOST)
            except StripeError as exc:
                return JSONResponse(exc.body, status_code=exc.status)

        return endpoint

    def _get(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                account = self._account(request)
                fault = self.take_fault(request)
                if fault is not None and fault.mode == "error_before":
                    return JSONResponse(_LOST, status_code=500)
                return await apply_fault_after(fault, JSONResponse(self._find(account, kind, request.path_params["id"])), _LOST)
            except StripeError as exc:
                return JSONResponse(exc.body, status_code=exc.status)

        return endpoint

    def _list(self, kind: str, filter_by: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                account = self._account(request)
            except StripeError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            fault = self.take_fault(request)
            if fault is not None and fault.mode == "error_before":
                return JSONResponse(_LOST, status_code=500)
            wanted = request.query_params.get(filter_by)
            limit = int(request.query_params.get("limit", "10"))
            source = account.events if kind == "event" else [o for o in account.objects.values() if o["object"] == kind]
            found = [o for o in source if wanted is None or o.get(filter_by) == wanted]
            found.sort(key=lambda o: o["created"], reverse=True)
            listed = {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "url": request.url.path}
            return await apply_fault_after(fault, JSONResponse(listed), _LOST)

        return endpoint

    @staticmethod
    def _find(account: StripeAccount, kind: str, object_id: str, param: str = "id") -> dict[str, Any]:
        found = next((e for e in account.events if e["id"] == object_id), None) if kind == "event" else account.objects.get(object_id)
        if found is None or found["object"] != kind:
            raise StripeError(404, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing", param=param)
        return found

    def _store(self, account: StripeAccount, obj: dict[str, Any]) -> dict[str, Any]:
        account.objects[obj["id"]] = obj
        return obj

    def _emit(self, account: StripeAccount, type_: str, obj: dict[str, Any], request: Request) -> None:
        event: dict[str, Any] = {
            "id": new_id("evt_", 24),
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "pending_webhooks": 0,
            "data": {"object": json.loads(json.dumps(obj))},
            "request": {"id": new_id("req_"), "idempotency_key": request.headers.get("idempotency-key")},
        }
        account.events.append(event)
        for endpoint in (o for o in account.objects.values() if o["object"] == "webhook_endpoint"):
            if "*" in endpoint["enabled_events"] or type_ in endpoint["enabled_events"]:
                event["pending_webhooks"] += 1
                body = json.dumps(event).encode()
                headers = {"Stripe-Signature": stripe_signature(body, endpoint["secret"])}
                self.send_webhook(endpoint["url"], body, headers, [event["id"]], type_, bearer(request))

    def _card(self, account: StripeAccount, payment_method: str, customer: str | None) -> tuple[dict[str, Any], str]:
        """The payment method named by a request, creating one for a test token (pm_card_visa)."""
        if payment_method in TEST_PAYMENT_METHODS:
            pm = self._new_payment_method(account, TEST_PAYMENT_METHODS[payment_method], customer)
        else:
            pm = self._find(account, "payment_method", payment_method, "payment_method")
        return pm, account.card_numbers[pm["id"]]

    def _new_payment_method(self, account: StripeAccount, number: str, customer: str | None) -> dict[str, Any]:
        if number not in TEST_CARDS:
            raise StripeError(402, "card_error", "Your card number is incorrect.", code="incorrect_number", param="card[number]")
        brand = TEST_CARDS[number][0]
        pm: dict[str, Any] = {
            "id": new_id("pm_", 24),
            "object": "payment_method",
            "type": "card",
            "created": int(time.time()),
            "customer": customer,
            "livemode": False,
            "metadata": {},
            "card": {"brand": brand, "last4": number[-4:], "exp_month": 12, "exp_year": 2034, "country": "US", "funding": "credit"},
        }
        account.card_numbers[pm["id"]] = number
        return self._store(account, pm)

    # --- resources ------------------------------------------------------------------------

    async def create_customer(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        customer = {
            "id": new_id("cus_"),
            "object": "customer",
            "created": int(time.time()),
            "livemode": False,
            "email": params.get("email"),
            "name": params.get("name"),
            "description": params.get("description"),
            "metadata": params.get("metadata", {}),
            "invoice_settings": {"default_payment_method": None},
        }
        self._store(account, customer)
        self._emit(account, "customer.created", customer, request)
        return customer

    async def create_payment_method(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        if params.get("type") != "card" or "number" not in params.get("card", {}):
            raise StripeError(400, "invalid_request_error", "The sandbox creates card payment methods: give type=card and card[number].", param="type")
        return self._new_payment_method(account, params["card"]["number"].replace(" ", ""), None)

    async def attach_payment_method(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        pm = self._find(account, "payment_method", request.path_params["id"])
        customer = self._find(account, "customer", params.get("customer", ""), "customer")
        pm["customer"] = customer["id"]
        self._emit(account, "payment_method.attached", pm, request)
        return pm

    async def detach_payment_method(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        pm = self._find(account, "payment_method", request.path_params["id"])
        if pm["customer"] is None:
            raise StripeError(400, "invalid_request_error", "The payment method you provided is not attached to a customer so detachment is impossible.")
        pm["customer"] = None
        self._emit(account, "payment_method.detached", pm, request)
        return pm

    # --- Checkout in setup mode: the hosted page that saves a card ------------------------------

    async def create_checkout_session(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        if params.get("mode") != "setup":
            raise StripeError(400, "invalid_request_error", "The sandbox's Checkout takes mode=setup (saving a card).", param="mode")
        if not params.get("success_url"):
            raise StripeError(400, "invalid_request_error", "Missing required param: success_url.", param="success_url")
        if params.get("customer"):
            self._find(account, "customer", params["customer"], "customer")
        session_id = new_id("cs_test_", 40)
        base = str(request.base_url).rstrip("/")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
            "mode": "setup",
            "status": "open",
            "payment_status": "no_payment_required",
            "customer": params.get("customer"),
            "currency": (params.get("currency") or "").lower() or None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "metadata": params.get("metadata", {}),
            "payment_method_types": params.get("payment_method_types", ["card"]),
            "setup_intent": None,
            "client_reference_id": params.get("client_reference_id"),
            "url": f"{base}/checkout/{session_id}",
        }
        account.setup_metadata[session_id] = dict((params.get("setup_intent_data") or {}).get("metadata") or {})
        self.checkouts[session_id] = bearer(request) or ""
        return self._store(account, session)

    async def checkout_page(self, request: Request) -> Response:
        """The customer's side: a card form. A good test card saves (a SetupIntent succeeds, the
        session completes, `checkout.session.completed` is sent) and the browser goes to
        `success_url`; a declined one is shown on the page, as Checkout shows it."""
        session_id = request.path_params["id"]
        account = self.accounts.get(self.checkouts.get(session_id, ""))
        session = account.objects.get(session_id) if account else None
        if account is None or session is None:
            return HTMLResponse("<!DOCTYPE html><title>Not found</title><p>No such checkout session.</p>", status_code=404)
        if session["status"] != "open":
            return RedirectResponse(self._success_url(session), status_code=303)
        error = None
        if request.method == "POST":
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            try:
                pm = self._new_payment_method(account, form.get("cardnumber", "").replace(" ", ""), session["customer"])
                if session["customer"]:
                    pm["customer"] = session["customer"]
                pm["billing_details"] = {"name": form.get("name") or None}
                seti_id = new_id("seti_", 24)
                intent = self._store(
                    account,
                    {
                        "id": seti_id,
                        "object": "setup_intent",
                        "created": int(time.time()),
                        "livemode": False,
                        "customer": session["customer"],
                        "payment_method": None,
                        "status": "requires_payment_method",
                        "usage": "off_session",
                        "payment_method_types": ["card"],
                        "client_secret": f"{seti_id}_secret_{new_id('', 24)}",
                        "metadata": account.setup_metadata.get(session_id, {}),
                        "last_setup_error": None,
                    },
                )
                session["setup_intent"] = seti_id
                self._emit(account, "setup_intent.created", intent, request)
                self._confirm_setup(account, intent, pm["id"], request)
            except StripeError as exc:
                error = exc.body["error"]["message"]
            else:
                session["status"] = "complete"
                self._emit(account, "checkout.session.completed", session, request)
                return RedirectResponse(self._success_url(session), status_code=303)
        fields = (
            hosted.field("Card number", "cardnumber", placeholder="4242 4242 4242 4242", autocomplete="cc-number")
            + '<div class="row">'
            + hosted.field("Expiry", "exp", placeholder="MM / YY", autocomplete="cc-exp")
            + hosted.field("CVC", "cvc", placeholder="123", autocomplete="cc-csc")
            + "</div>"
            + hosted.field("Name on card", "name", autocomplete="cc-name")
        )
        customer = account.objects.get(session["customer"] or "", {})
        intro = f"Save a card for {customer.get('name') or customer.get('email') or 'future payments'}. You will not be charged now."
        html = hosted.page("Set up a card", intro, fields, "Save card", error=error, cancel_url=session["cancel_url"])
        return HTMLResponse(html, status_code=402 if error else 200)

    @staticmethod
    def _success_url(session: dict[str, Any]) -> str:
        return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])

    async def create_setup_intent(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        if params.get("customer"):
            self._find(account, "customer", params["customer"], "customer")
        seti_id = new_id("seti_", 24)
        intent = {
            "id": seti_id,
            "object": "setup_intent",
            "created": int(time.time()),
            "livemode": False,
            "customer": params.get("customer"),
            "payment_method": None,
            "status": "requires_payment_method",
            "usage": params.get("usage", "off_session"),
            "payment_method_types": params.get("payment_method_types", ["card"]),
            "client_secret": f"{seti_id}_secret_{new_id('', 24)}",
            "metadata": params.get("metadata", {}),
            "last_setup_error": None,
        }
        return self._created(account, "setup_intent.created", intent, params, request, self._confirm_setup)

    async def confirm_setup_intent(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        intent = self._find(account, "setup_intent", request.path_params["id"])
        if intent["status"] == "succeeded":
            raise StripeError(400, "invalid_request_error", "This SetupIntent has already succeeded.", code="setup_intent_unexpected_state")
        return self._confirm_setup(account, intent, params.get("payment_method") or intent["payment_method"], request)

    def _created(
        self,
        account: StripeAccount,
        event_type: str,
        intent: dict[str, Any],
        params: dict[str, Any],
        request: Request,
        confirm: Callable[[StripeAccount, dict[str, Any], str | None, Request], dict[str, Any]],
    ) -> dict[str, Any]:
        """Keep a new intent and tell of it; with a payment method it awaits confirmation, which
        `confirm=true` does at once (as Stripe's create-and-confirm)."""
        self._store(account, intent)
        self._emit(account, event_type, intent, request)
        if params.get("payment_method"):
            intent["status"] = "requires_confirmation"
            if _truthy(params.get("confirm")):
                return confirm(account, intent, params["payment_method"], request)
        return intent

    def _confirm_setup(self, account: StripeAccount, intent: dict[str, Any], payment_method: str | None, request: Request) -> dict[str, Any]:
        if not payment_method:
            raise StripeError(400, "invalid_request_error", "A payment method is required to confirm.", param="payment_method")
        pm, number = self._card(account, payment_method, intent["customer"])
        failure = TEST_CARDS[number][1]
        if failure is not None:
            code, decline_code, message = failure
            intent.update(status="requires_payment_method", last_setup_error={"code": code, "decline_code": decline_code, "message": message})
            self._emit(account, "setup_intent.setup_failed", intent, request)
            raise StripeError(402, "card_error", message, code=code, decline_code=decline_code, setup_intent=intent)
        pm["customer"] = intent["customer"]
        intent.update(status="succeeded", payment_method=pm["id"], last_setup_error=None)
        self._emit(account, "setup_intent.succeeded", intent, request)
        return intent

    async def create_payment_intent(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        try:
            amount = int(params.get("amount", ""))
        except ValueError as exc:
            raise StripeError(400, "invalid_request_error", "Missing or invalid amount.", param="amount") from exc
        if amount < 1 or not params.get("currency"):
            raise StripeError(400, "invalid_request_error", "amount must be positive and currency given.", param="amount")
        if params.get("customer"):
            self._find(account, "customer", params["customer"], "customer")
        pi_id = new_id("pi_", 24)
        intent = {
            "id": pi_id,
            "object": "payment_intent",
            "created": int(time.time()),
            "livemode": False,
            "amount": amount,
            "amount_received": 0,
            "currency": params["currency"].lower(),
            "customer": params.get("customer"),
            "payment_method": None,
            "status": "requires_payment_method",
            "metadata": params.get("metadata", {}),
            "description": params.get("description"),
            "client_secret": f"{pi_id}_secret_{new_id('', 24)}",
            "latest_charge": None,
            "last_payment_error": None,
            "setup_future_usage": None,
        }
        return self._created(account, "payment_intent.created", intent, params, request, self._charge)

    async def confirm_payment_intent(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        intent = self._find(account, "payment_intent", request.path_params["id"])
        if intent["status"] == "succeeded":
            raise StripeError(
                400,
                "invalid_request_error",
                "This PaymentIntent's payment_method could not be updated because it has a status of succeeded.",
                code="payment_intent_unexpected_state",
                payment_intent=intent,
            )
        return self._charge(account, intent, params.get("payment_method") or intent["payment_method"], request)

    def _charge(self, account: StripeAccount, intent: dict[str, Any], payment_method: str | None, request: Request) -> dict[str, Any]:
        if not payment_method:
            raise StripeError(400, "invalid_request_error", "A payment method is required to confirm.", param="payment_method")
        pm, number = self._card(account, payment_method, intent["customer"])
        intent["payment_method"] = pm["id"]
        charge_id = new_id("ch_", 24)
        failure = TEST_CARDS[number][2]
        if failure is not None:
            code, decline_code, message = failure
            intent.update(
                status="requires_payment_method",
                latest_charge=charge_id,
                last_payment_error={"type": "card_error", "code": code, "decline_code": decline_code, "message": message, "charge": charge_id},
            )
            self._emit(account, "payment_intent.payment_failed", intent, request)
            raise StripeError(402, "card_error", message, code=code, decline_code=decline_code, charge=charge_id, payment_intent=json.loads(json.dumps(intent)))
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge_id, last_payment_error=None)
        self._store(
            account,
            {
                "id": charge_id,
                "object": "charge",
                "created": int(time.time()),
                "amount": intent["amount"],
                "amount_refunded": 0,
                "currency": intent["currency"],
                "payment_intent": intent["id"],
                "refunded": False,
                "status": "succeeded",
            },
        )
        self._emit(account, "payment_intent.succeeded", intent, request)
        return intent

    async def create_refund(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        if params.get("payment_intent"):
            intent = self._find(account, "payment_intent", params["payment_intent"], "payment_intent")
        elif params.get("charge"):
            intent = self._find(account, "payment_intent", self._find(account, "charge", params["charge"], "charge")["payment_intent"])
        else:
            raise StripeError(400, "invalid_request_error", "Give payment_intent or charge.", param="payment_intent")
        if intent["status"] != "succeeded":
            raise StripeError(400, "invalid_request_error", "This PaymentIntent has not succeeded; nothing to refund.", code="charge_not_refundable")
        charge = account.objects[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = int(params.get("amount", remaining))
        if remaining == 0:
            raise StripeError(400, "invalid_request_error", f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
        if amount < 1 or amount > remaining:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        refund = {
            "id": new_id("re_", 24),
            "object": "refund",
            "created": int(time.time()),
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "charge": charge["id"],
            "status": "succeeded",
            "metadata": params.get("metadata", {}),
            "reason": params.get("reason"),
        }
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._store(account, refund)
        self._emit(account, "refund.created", refund, request)
        self._emit(account, "charge.refunded", charge, request)
        return refund

    async def create_webhook_endpoint(self, account: StripeAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        if not params.get("url"):
            raise StripeError(400, "invalid_request_error", "url is required", param="url")
        endpoint = {
            "id": new_id("we_", 24),
            "object": "webhook_endpoint",
            "created": int(time.time()),
            "url": params["url"],
            "enabled_events": params.get("enabled_events", ["*"]),
            "secret": new_id("whsec_", 32),
            "status": "enabled",
        }
        return self._store(account, endpoint)
