"""Provider HTTP: webhooks, one URL per seller and provider (each seller has its own secret)."""

from __future__ import annotations

import re
from typing import Any

import stripe
from fastapi import APIRouter, Request
from gocardless_pro.errors import InvalidSignatureError

from billing_runtime.api import Runtime
from billing_runtime.errors import BillingError, NotFound
from payments.deps import GatewaysDep
from payments.providers import repository as providers_repo
from payments.providers.gateways import GoCardlessGateway, ProviderUnavailable, StripeGateway
from payments.webhooks import service
from payments.webhooks.service import WEBHOOK_EVENTS

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class InvalidSignature(BillingError):
    status_code = 400
    code = "invalid_signature"


class ProviderBusy(BillingError):
    status_code = 503
    code = "provider_unavailable"


async def _secret(runtime: Any, tenant: str, provider: str) -> Any:
    if not _TENANT.match(tenant):
        raise NotFound("no such webhook endpoint", code="webhook_endpoint_unknown")
    async with runtime.sessions() as session:
        creds = await providers_repo.get(session, tenant, provider)
    if creds is None:
        raise NotFound("no such webhook endpoint", code="webhook_endpoint_unknown")
    return creds


@router.post("/stripe/{tenant}")
async def stripe_webhook(tenant: str, request: Request, runtime: Runtime) -> dict[str, Any]:
    creds = await _secret(runtime, tenant, "stripe")
    payload = await request.body()  # the raw bytes: the signature is over them, not over parsed JSON
    try:
        event = StripeGateway.verify(payload, request.headers.get("stripe-signature"), creds.webhook_secret)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        WEBHOOK_EVENTS.labels("stripe", "rejected").inc()
        raise InvalidSignature("the Stripe-Signature header does not match this body, this endpoint's secret and the last 300 s") from exc
    async with runtime.transaction() as session:
        effect = await service.apply_stripe_event(runtime, session, tenant, event)
    return {"received": event.id, "effect": effect}


@router.post("/gocardless/{tenant}")
async def gocardless_webhook(tenant: str, request: Request, runtime: Runtime, gateways: GatewaysDep) -> dict[str, Any]:
    creds = await _secret(runtime, tenant, "gocardless")
    payload = await request.body()
    try:
        events = GoCardlessGateway.parse(payload, creds.webhook_secret, request.headers.get("webhook-signature"))
    except (InvalidSignatureError, ValueError, KeyError) as exc:
        WEBHOOK_EVENTS.labels("gocardless", "rejected").inc()
        # GoCardless's documented answer to a webhook whose signature does not match.
        raise InvalidSignature("the Webhook-Signature header does not match this body and this endpoint's secret", status_code=498) from exc
    effects = {}
    try:
        for event in events:
            async with runtime.transaction() as session:
                effects[event.id] = await service.apply_gocardless_event(runtime, session, gateways, tenant, creds.api_key, event.attributes)
    except ProviderUnavailable as exc:
        # Not applied (the transaction rolled back): GoCardless will deliver it again.
        raise ProviderBusy("GoCardless could not be asked about this event; it will be retried") from exc
    return {"received": effects}
