"""Provider HTTP: webhooks, one URL per seller and provider (each seller has its own secret)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import stripe
from fastapi import APIRouter, Request
from gocardless_pro.errors import InvalidSignatureError

from billing_runtime.api import Runtime
from billing_runtime.crypto import SecretUnreadable
from billing_runtime.errors import BillingError, NotFound
from payments.deps import GatewaysDep
from payments.providers import repository as providers_repo
from payments.providers.gateways import GoCardlessGateway, ProviderUnavailable, StripeGateway
from payments.providers.repository import Credentials
from payments.providers.service import MIN_WEBHOOK_SECRET_LENGTH, ProviderUnavailableError, keyring
from payments.webhooks import service
from payments.webhooks.schemas import GoCardlessAck, StripeAck
from payments.webhooks.service import WEBHOOK_EVENTS

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
TOLERANCE_SECONDS = 300


class InvalidSignature(BillingError):
    status_code = 400
    code = "invalid_signature"


async def _secret(runtime: Any, tenant: str, provider: str) -> Credentials:
    if not _TENANT.match(tenant):
        raise NotFound("no such webhook endpoint", code="webhook_endpoint_unknown")
    async with runtime.sessions() as session:
        try:
            creds = await providers_repo.get(session, keyring(runtime), tenant, provider)
        except SecretUnreadable as exc:
            # Not the sender's fault: the provider delivers again once the operator fixed the keys.
            raise ProviderUnavailableError("this endpoint's secret cannot be read now; deliver again later", code="provider_credentials_unreadable") from exc
    if creds is None:
        raise NotFound("no such webhook endpoint", code="webhook_endpoint_unknown")
    if len(creds.webhook_secret.strip()) < MIN_WEBHOOK_SECRET_LENGTH:
        # Stored before secrets had a minimum length: anyone could sign with an empty or short key.
        WEBHOOK_EVENTS.labels(provider, "rejected").inc()
        raise InvalidSignature(f"this endpoint's webhook secret is too short to trust: PUT /v1/providers/{provider} with the provider's secret")
    return creds


def _signed_at(signature: str | None) -> int | None:
    """The `t=` of a Stripe-Signature header."""
    stamps = [v for k, _, v in (p.partition("=") for p in (signature or "").split(",")) if k.strip() == "t"]
    return int(stamps[0]) if len(stamps) == 1 and stamps[0].strip().isdigit() else None


def _too_far(moment: float) -> bool:
    # Transport freshness: the wall clock, even when business time is frozen (BILLING_CLOCK_FIXED_AT).
    return abs(time.time() - moment) > TOLERANCE_SECONDS


@router.post("/stripe/{tenant}", response_model=StripeAck)
async def stripe_webhook(tenant: str, request: Request, runtime: Runtime, gateways: GatewaysDep) -> dict[str, Any]:
    creds = await _secret(runtime, tenant, "stripe")
    payload = await request.body()  # the raw bytes: the signature is over them, not over parsed JSON
    try:
        event = StripeGateway.verify(payload, request.headers.get("stripe-signature"), creds.webhook_secret)
        # The SDK's tolerance looks only back: a signature dated in the future is as stale.
        signed_at = _signed_at(request.headers.get("stripe-signature"))
        if signed_at is None or _too_far(signed_at):
            raise ValueError("signed outside ±300 s")
    except (stripe.SignatureVerificationError, ValueError) as exc:
        WEBHOOK_EVENTS.labels("stripe", "rejected").inc()
        raise InvalidSignature("the Stripe-Signature header does not match this body, this endpoint's secret and the 300 s around now") from exc
    card = await service.stripe_card(gateways, creds.api_key, event)  # a saved card's digits: no transaction open over HTTP
    async with runtime.transaction() as session:
        effect = await service.apply_stripe_event(runtime, session, tenant, event, card=card)
    return {"received": event.id, "effect": effect}


@router.post("/gocardless/{tenant}", response_model=GoCardlessAck)
async def gocardless_webhook(tenant: str, request: Request, runtime: Runtime, gateways: GatewaysDep) -> dict[str, Any]:
    creds = await _secret(runtime, tenant, "gocardless")
    payload = await request.body()
    try:
        events = GoCardlessGateway.parse(payload, creds.webhook_secret, request.headers.get("webhook-signature"))
    except (InvalidSignatureError, ValueError, KeyError) as exc:
        WEBHOOK_EVENTS.labels("gocardless", "rejected").inc()
        # GoCardless's documented answer to a webhook whose signature does not match.
        raise InvalidSignature("the Webhook-Signature header does not match this body and this endpoint's secret", status_code=498) from exc
    # GoCardless signs no timestamp and retries an event for days (its id makes a repeat harmless),
    # so only an event dated in the future is refused.
    if any(_future(event.created_at) for event in events):
        WEBHOOK_EVENTS.labels("gocardless", "rejected").inc()
        raise InvalidSignature("an event of this webhook is dated more than 300 s in the future", status_code=498)
    effects = {}
    try:
        for event in events:
            async with runtime.transaction() as session:
                effects[event.id] = await service.apply_gocardless_event(runtime, session, gateways, tenant, creds.api_key, event.attributes)
    except ProviderUnavailable as exc:
        # Not applied (the transaction rolled back): GoCardless will deliver it again.
        raise ProviderUnavailableError("GoCardless could not be asked about this event; it will be retried") from exc
    return {"received": effects}


def _future(created_at: Any) -> bool:
    if created_at is None:
        return False
    try:
        moment = datetime.fromisoformat(str(created_at)).timestamp()
    except ValueError:
        return True
    return moment - time.time() > TOLERANCE_SECONDS
