"""The only code that talks to Stripe and GoCardless, through their official SDKs.

Pointed at the real providers by default, or at the local sandboxes by base URL
(`PAYMENTS_STRIPE_API_BASE`, `PAYMENTS_GOCARDLESS_BASE_URL`): nothing else knows the difference.
A call either gives an `Outcome` (the provider answered) or raises `ProviderUnavailable` (no
answer, a timeout, a 5xx, a rate limit or a conflicting request in flight: the money may or may
not have moved; the reconciler finds out). An `Outcome` is `failed` only on the provider's final
word that no money moved (a decline, a refusal); every answer that is not final is `pending`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal, TypeVar

import gocardless_pro
import requests
import stripe
from gocardless_pro import errors as gc_errors
from gocardless_pro import webhooks as gc_webhooks
from stripe.params import CustomerCreateParams

from billing_events.money import NotInMinorUnits, minor_units, to_minor

T = TypeVar("T")
# `pending`: the provider has it and has not decided (an attempt in this state is `processing`).
Status = Literal["pending", "succeeded", "failed"]
_STRIPE_REFUND_STATUS: dict[str, Status] = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}


def stripe_refund_status(status: str | None) -> Status:
    """Ours of a Stripe refund's status: a refund neither succeeded, failed nor canceled is pending."""
    return _STRIPE_REFUND_STATUS.get(status or "", "pending")


@dataclass(frozen=True)
class Outcome:
    status: Status
    provider_ref: str | None
    reason_code: str | None = None
    reason: str | None = None
    metadata: dict[str, str] | None = None


# Where Stripe's API counts a currency in other units than ISO 4217's minor unit (Stripe's
# "Supported currencies", special cases): ISK stays two-decimal in the API (100 is 1 króna) though
# ISO gives it 0, and MGA is zero-decimal in the API though ISO gives it 2. An exponent, not a
# second minor-units table: every other currency is what billing_events.money says.
_STRIPE_EXPONENT = {"ISK": 2, "MGA": 0}


def provider_units(provider: str, amount: Decimal, currency: str) -> int:
    """`amount` as the integer the provider's API takes for it (GoCardless: ISO minor units)."""
    units = to_minor(amount, currency)
    exponent = _STRIPE_EXPONENT.get(currency) if provider == "stripe" else None
    if exponent is None:
        return units
    shifted = Decimal(units).scaleb(exponent - minor_units(currency))
    if shifted != shifted.to_integral_value():
        raise NotInMinorUnits(f"{amount} {currency} cannot be written in {provider}'s units for {currency}")
    return int(shifted)


class ProviderUnavailable(Exception):
    """The provider did not answer, or answered 5xx: whether it acted is unknown."""


class ProviderRefused(Exception):
    """The provider refused a setup request (bad credentials, invalid data)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- Stripe ----------------------------------------------------------------------------------

STRIPE_FAILED_EVENTS = {"payment_intent.payment_failed", "payment_intent.canceled"}


def stripe_outcome(found: Any, event_type: str | None = None) -> Outcome:
    """What a PaymentIntent (an SDK object, or the plain dict inside a webhook of `event_type`)
    says happened. Only a final word is a failure: the `payment_failed` (or `canceled`) event, a
    canceled intent, or a confirmed one that came back to `requires_payment_method` with its
    `last_payment_error` set. A new intent (`payment_intent.created`, `requires_payment_method`
    and no error yet), `processing`, `requires_action` or `requires_confirmation` is pending."""
    intent = found.to_dict() if hasattr(found, "to_dict") else found
    state = intent["status"]
    error = intent.get("last_payment_error") or {}
    metadata = dict(intent.get("metadata") or {})
    if state == "succeeded":
        return Outcome("succeeded", intent["id"], metadata=metadata)
    if event_type in STRIPE_FAILED_EVENTS or state == "canceled" or (state == "requires_payment_method" and error):
        code = error.get("decline_code") or error.get("code") or state
        return Outcome("failed", intent["id"], code, error.get("message") or f"payment intent {state}", metadata)
    return Outcome("pending", intent["id"], metadata=metadata)


class StripeGateway:
    def __init__(self, api_base: str | None, timeout: float) -> None:
        self.api_base = api_base
        self.timeout = timeout
        self._clients: dict[str, stripe.StripeClient] = {}

    def client(self, api_key: str) -> stripe.StripeClient:
        if api_key not in self._clients:
            bases: Any = {"api": self.api_base} if self.api_base else None
            self._clients[api_key] = stripe.StripeClient(
                api_key, base_addresses=bases, max_network_retries=0, http_client=stripe.HTTPXClient(timeout=self.timeout)
            )
        return self._clients[api_key]

    async def create_customer(self, api_key: str, key: str, email: str | None, name: str | None, metadata: dict[str, str]) -> str:
        params: CustomerCreateParams = {}  # only what is given (an empty metadata too is left out)
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        if metadata:
            params["metadata"] = metadata
        customer = await self._call(lambda: self.client(api_key).v1.customers.create_async(params, {"idempotency_key": key}))
        return str(customer.id)

    async def create_setup_intent(self, api_key: str, customer: str, key: str, metadata: dict[str, str]) -> tuple[str, str]:
        params: Any = {"customer": customer, "usage": "off_session", "payment_method_types": ["card"], "metadata": metadata}
        intent = await self._call(lambda: self.client(api_key).v1.setup_intents.create_async(params, {"idempotency_key": key}))
        return str(intent.id), str(intent.client_secret)

    async def create_checkout_setup(
        self, api_key: str, customer: str, key: str, metadata: dict[str, str], success_url: str, cancel_url: str | None, currency: str
    ) -> tuple[str, str]:
        """A Checkout Session in setup mode: (its id, the hosted page the buyer's browser is sent
        to). Stripe saves the card there and sends the browser back to `success_url`."""
        params: Any = {
            "mode": "setup",
            "customer": customer,
            "currency": currency.lower(),
            "payment_method_types": ["card"],
            "success_url": success_url,
            "cancel_url": cancel_url or success_url,
            "metadata": metadata,
            "setup_intent_data": {"metadata": metadata},
        }
        session = await self._call(lambda: self.client(api_key).v1.checkout.sessions.create_async(params, {"idempotency_key": key}))
        return str(session.id), str(session.url)

    async def saved_card(self, api_key: str, setup_ref: str) -> tuple[str, str | None, dict[str, Any]]:
        """What became of a card setup, read back from Stripe: (`active` | `pending` | `failed`,
        the payment method, the card's brand, last four digits and expiry). `setup_ref` is a
        Checkout Session (`cs_…`) or a SetupIntent (`seti_…`)."""
        client = self.client(api_key)
        intent_id: str | None = setup_ref
        if setup_ref.startswith("cs_"):
            session = await self._call(lambda: client.v1.checkout.sessions.retrieve_async(setup_ref))
            intent_id = session.setup_intent if isinstance(session.setup_intent, str) or session.setup_intent is None else session.setup_intent.id
            if session.status == "expired":
                return "failed", None, {}
            if session.status != "complete" or intent_id is None:
                return "pending", None, {}
        assert intent_id is not None
        intent = await self._call(lambda: client.v1.setup_intents.retrieve_async(intent_id))
        if intent.status != "succeeded" or not intent.payment_method:
            return ("failed" if intent.status == "canceled" else "pending"), None, {}
        pm_id = intent.payment_method if isinstance(intent.payment_method, str) else intent.payment_method.id
        return "active", pm_id, await self.card_details(api_key, pm_id)

    async def card_details(self, api_key: str, payment_method: str) -> dict[str, Any]:
        """What Stripe shows of a saved card (its PaymentMethod's `card`): brand, last four digits
        and expiry; {} for a method that is not a card."""
        pm = await self._call(lambda: self.client(api_key).v1.payment_methods.retrieve_async(payment_method))
        card = pm.card
        return {} if card is None else {"brand": card.brand, "last4": card.last4, "exp_month": card.exp_month, "exp_year": card.exp_year}

    async def detach(self, api_key: str, payment_method: str) -> None:
        """The card is no longer the customer's at Stripe (one already detached counts as done)."""
        try:
            await self._call(lambda: self.client(api_key).v1.payment_methods.detach_async(payment_method))
        except ProviderRefused as exc:
            if "not attached" not in str(exc):
                raise

    async def charge(self, api_key: str, customer: str, payment_method: str, amount_minor: int, currency: str, key: str, metadata: dict[str, str]) -> Outcome:
        params: Any = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": metadata,
        }
        try:
            intent = await self.client(api_key).v1.payment_intents.create_async(params, {"idempotency_key": key})
        except stripe.CardError as exc:
            error = exc.error
            intent_ref = error.payment_intent.id if error is not None and error.payment_intent is not None else None
            code = (error.decline_code if error is not None else None) or exc.code or "card_declined"
            return Outcome("failed", intent_ref, code, exc.user_message or str(exc), metadata)
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.IdempotencyError) as exc:
            # This key with other parameters, or (a 409) its first request still in flight at Stripe:
            # what Stripe did is not known yet.
            raise ProviderUnavailable(str(exc)) from exc
        except stripe.StripeError as exc:
            if exc.http_status is None or exc.http_status >= 500 or exc.http_status == 409:
                raise ProviderUnavailable(str(exc)) from exc
            return Outcome("failed", None, exc.code or "provider_refused", exc.user_message or str(exc), metadata)
        return stripe_outcome(intent)

    async def retrieve(self, api_key: str, intent_id: str) -> Outcome:
        """The payment intent as Stripe has it now (a refusal to say is no answer either)."""
        try:
            return stripe_outcome(await self._call(lambda: self.client(api_key).v1.payment_intents.retrieve_async(intent_id)))
        except ProviderRefused as exc:
            raise ProviderUnavailable(str(exc)) from exc

    async def find_charge(self, api_key: str, customer: str, attempt_id: str) -> Outcome | None:
        """The payment intent an earlier call for this attempt created, if any (asked after a
        lost answer, before trying again)."""
        try:
            listed = await self._call(lambda: self.client(api_key).v1.payment_intents.list_async({"customer": customer, "limit": 100}))
        except ProviderRefused as exc:
            raise ProviderUnavailable(str(exc)) from exc
        for intent in listed.data:
            if (intent.to_dict().get("metadata") or {}).get("attempt_id") == attempt_id:
                return stripe_outcome(intent)
        return None

    async def refund(self, api_key: str, payment_ref: str, amount_minor: int, key: str, metadata: dict[str, str]) -> Outcome:
        params: Any = {"payment_intent": payment_ref, "amount": amount_minor, "metadata": metadata}
        try:
            refund = await self.client(api_key).v1.refunds.create_async(params, {"idempotency_key": key})
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except stripe.StripeError as exc:
            if exc.http_status is None or exc.http_status >= 500:
                raise ProviderUnavailable(str(exc)) from exc
            return Outcome("failed", None, exc.code or "refund_refused", exc.user_message or str(exc))
        return Outcome(stripe_refund_status(refund.status), refund.id)

    @staticmethod
    def verify(payload: bytes, signature: str | None, secret: str) -> stripe.Event:
        """The event, if `Stripe-Signature` is Stripe's signature of this exact body with this
        secret, made at most 300 s ago; else `stripe.SignatureVerificationError`."""
        return stripe.Webhook.construct_event(payload, signature or "", secret, tolerance=300)

    @staticmethod
    async def _call(call: Callable[[], Any]) -> Any:
        try:
            return await call()
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailable(str(exc)) from exc
        except stripe.StripeError as exc:
            if exc.http_status is None or exc.http_status >= 500:
                raise ProviderUnavailable(str(exc)) from exc
            raise ProviderRefused(exc.code or "provider_refused", exc.user_message or str(exc)) from exc


# --- GoCardless ------------------------------------------------------------------------------

GOCARDLESS_PAYMENT_STATUS: dict[str, Status] = {
    "pending_customer_approval": "pending",
    "pending_submission": "pending",
    "submitted": "pending",
    "confirmed": "succeeded",
    "paid_out": "succeeded",
    "failed": "failed",
    "cancelled": "failed",
    "customer_approval_denied": "failed",
    "charged_back": "failed",
}
# GoCardless mandate status → the MandateChanged vocabulary.
GOCARDLESS_MANDATE_STATUS: dict[str, str] = {
    "pending_customer_approval": "pending",
    "pending_submission": "pending",
    "submitted": "pending",
    "active": "active",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
    "blocked": "failed",
    "suspended_by_payer": "cancelled",
    "consumed": "cancelled",
}
GOCARDLESS_FAILURE_ACTIONS = {"failed", "late_failure", "charged_back", "cancelled", "customer_approval_denied"}
SCHEME_BY_CURRENCY = {"EUR": "sepa_core", "GBP": "bacs", "SEK": "autogiro", "DKK": "betalingsservice", "AUD": "becs", "NZD": "becs_nz", "USD": "ach"}


class GoCardlessGateway:
    """gocardless-pro is synchronous (requests): each call runs in a worker thread."""

    def __init__(self, base_url: str | None, environment: str, timeout: float) -> None:
        self.base_url = base_url
        self.environment = environment
        self.timeout = timeout

    def client(self, access_token: str) -> gocardless_pro.Client:
        if self.base_url:
            return gocardless_pro.Client(access_token=access_token, base_url=self.base_url, timeout=self.timeout)
        return gocardless_pro.Client(access_token=access_token, environment=self.environment, timeout=self.timeout)

    async def _call(self, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except (
            requests.Timeout,
            requests.ConnectionError,
            gc_errors.GoCardlessInternalError,
            gc_errors.MalformedResponseError,
            gc_errors.RateLimitError,
        ) as exc:
            raise ProviderUnavailable(str(exc)) from exc

    async def create_customer(self, token: str, key: str, email: str | None, name: str | None, metadata: dict[str, str]) -> str:
        params = {k: v for k, v in {"email": email, "company_name": name, "metadata": metadata}.items() if v}
        try:
            customer = await self._call(lambda: self.client(token).customers.create(params=params, headers={"Idempotency-Key": key}))
        except gc_errors.ApiError as exc:
            raise ProviderRefused("provider_refused", str(exc)) from exc
        return str(customer.id)

    async def start_mandate(self, token: str, customer: str, currency: str, key: str, metadata: dict[str, str], redirect_uri: str | None) -> tuple[str, str]:
        """A billing request for a mandate and its hosted flow: (billing request id, the URL the
        payer opens to give their bank details to GoCardless, never to us)."""
        scheme = SCHEME_BY_CURRENCY.get(currency, "sepa_core")
        request = {"mandate_request": {"scheme": scheme, "currency": currency, "metadata": metadata}, "links": {"customer": customer}, "metadata": metadata}
        try:
            brq = await self._call(lambda: self.client(token).billing_requests.create(params=request, headers={"Idempotency-Key": key}))
            flow_params: dict[str, Any] = {"links": {"billing_request": brq.id}}
            if redirect_uri:
                flow_params["redirect_uri"] = redirect_uri
            flow = await self._call(lambda: self.client(token).billing_request_flows.create(params=flow_params, headers={"Idempotency-Key": f"{key}-flow"}))
        except gc_errors.ApiError as exc:
            raise ProviderRefused("provider_refused", str(exc)) from exc
        return str(brq.id), str(flow.authorisation_url)

    async def mandate(self, token: str, mandate_id: str) -> tuple[str, dict[str, str]]:
        """(status in MandateChanged's words, metadata) as GoCardless has it now."""
        found = await self._call(lambda: self.client(token).mandates.get(mandate_id))
        return GOCARDLESS_MANDATE_STATUS.get(found.status, "pending"), dict(found.metadata or {})

    async def cancel_mandate(self, token: str, mandate_id: str) -> None:
        """Cancel the mandate at GoCardless (one already cancelled, failed or expired counts as done)."""
        try:
            await self._call(lambda: self.client(token).mandates.cancel(mandate_id))
        except gc_errors.InvalidStateError as exc:
            if not any(e.get("reason") == "mandate_already_cancelled" for e in exc.errors or []):
                raise ProviderRefused("provider_refused", str(exc)) from exc
        except gc_errors.ApiError as exc:
            raise ProviderRefused("provider_refused", str(exc)) from exc

    async def billing_request_mandate(self, token: str, billing_request_id: str) -> str | None:
        found = await self._call(lambda: self.client(token).billing_requests.get(billing_request_id))
        return found.links.mandate_request_mandate if found.links else None

    async def create_payment(
        self, token: str, mandate: str, amount_minor: int, currency: str, charge_on: date, key: str, metadata: dict[str, str], reference: str | None
    ) -> Outcome:
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency,
            "charge_date": charge_on.isoformat(),
            "metadata": metadata,
            "links": {"mandate": mandate},
        }
        if reference:
            params["reference"] = reference[:140]
        try:
            payment = await self._call(lambda: self.client(token).payments.create(params=params, headers={"Idempotency-Key": key}))
        except gc_errors.ApiError as exc:
            reason = exc.errors[0].get("reason") if exc.errors else None
            return Outcome("failed", None, reason or exc.type or "provider_refused", exc.message, metadata)
        return Outcome(GOCARDLESS_PAYMENT_STATUS.get(payment.status, "pending"), payment.id, metadata=dict(payment.metadata or {}))

    async def payment(self, token: str, payment_id: str) -> Outcome:
        """The payment as GoCardless has it now; a failed one with the reason of the event that
        failed it (the bank's cause), read from GoCardless's events."""
        try:
            found = await self._call(lambda: self.client(token).payments.get(payment_id))
            status = GOCARDLESS_PAYMENT_STATUS.get(found.status, "pending")
            metadata = dict(found.metadata or {})
            if status != "failed":
                return Outcome(status, found.id, metadata=metadata)
            events = await self._call(lambda: self.client(token).events.list(params={"payment": payment_id}).records)
        except gc_errors.ApiError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        failure = next((e for e in reversed(events) if e.action in GOCARDLESS_FAILURE_ACTIONS), None)
        details = (failure.attributes.get("details") if failure is not None else None) or {}
        return Outcome("failed", found.id, details.get("cause") or found.status, details.get("description") or f"payment {found.status}", metadata)

    async def find_payment(self, token: str, mandate: str, attempt_id: str) -> Outcome | None:
        """The payment an earlier call for this attempt created on the mandate, if any."""
        try:
            listed = await self._call(lambda: self.client(token).payments.list(params={"mandate": mandate}).records)
        except gc_errors.ApiError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        found = next((p for p in listed if (p.metadata or {}).get("attempt_id") == attempt_id), None)
        return None if found is None else await self.payment(token, found.id)

    async def refund(self, token: str, payment_ref: str, amount_minor: int, key: str, metadata: dict[str, str]) -> Outcome:
        params = {"amount": amount_minor, "links": {"payment": payment_ref}, "metadata": metadata}
        try:
            refund = await self._call(lambda: self.client(token).refunds.create(params=params, headers={"Idempotency-Key": key}))
        except gc_errors.ApiError as exc:
            reason = exc.errors[0].get("reason") if exc.errors else None
            return Outcome("failed", None, reason or "refund_refused", exc.message)
        return Outcome("succeeded", refund.id)

    @staticmethod
    def parse(body: bytes, secret: str, signature: str | None) -> list[Any]:
        """The events of a webhook whose `Webhook-Signature` is GoCardless's signature of this
        body; else `gocardless_pro.errors.InvalidSignatureError`."""
        return list(gc_webhooks.parse(body, secret, signature or ""))


@dataclass
class Gateways:
    stripe: StripeGateway
    gocardless: GoCardlessGateway
