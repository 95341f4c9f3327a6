"""Applying provider events. Each is applied once (its id is recorded in the same transaction
as its effect); its effect never depends on arriving in order:

- Stripe events carry the object as it was; states only move forward (collection.service
  `apply_outcome`): `payment_intent.created` is not a failure, a success wins over anything, and
  an older event never moves a final attempt back. `refund.*` events settle a refund whose call
  answered pending (refund.service `apply_stripe_refund`), a credit note's or a second success's.
- GoCardless events only say that something changed; the resource is read back from GoCardless
  and its current state applied, so a late or repeated event applies the truth of now.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from payments.collection import repository as collection_repo
from payments.collection.service import apply_outcome
from payments.methods import service as methods
from payments.providers.gateways import Gateways, Outcome, stripe_outcome
from payments.refund import service as refunds
from payments.webhooks import repository as repo

tracer = trace.get_tracer(__name__)
WEBHOOK_EVENTS = Counter("billing_payment_webhook_events_total", "Provider webhook events, by provider and effect", ["provider", "effect"])
start_at_zero(WEBHOOK_EVENTS, ("stripe", "gocardless"), ("duplicate", "ignored", "rejected", "unknown_payment"))

GC_FAILURE_ACTIONS = {"failed", "late_failure", "charged_back", "cancelled"}


async def _claim(runtime: ServiceRuntime, session: AsyncSession, provider: str, tenant: str, event_id: str, type_: str) -> bool:
    row = {"provider": provider, "event_id": event_id, "tenant": tenant, "type": type_, "effect": "received", "received_at": runtime.clock.now()}
    return await repo.claim(session, row)


async def _attempt_for(session: AsyncSession, tenant: str, metadata: dict[str, Any], provider_ref: str | None) -> Any:
    attempt = None
    if metadata.get("attempt_id"):
        attempt = await collection_repo.get_attempt(session, str(metadata["attempt_id"]), lock=True)
    if attempt is None and provider_ref:
        attempt = await collection_repo.attempt_by_ref(session, tenant, provider_ref)
    return attempt if attempt is not None and attempt.tenant == tenant else None


async def stripe_card(gateways: Gateways, api_key: str, event: Any) -> dict[str, Any] | None:
    """For a `setup_intent.succeeded`, what Stripe shows of the card it saved (`methods.webhook_card`),
    asked before the event's transaction opens; None for any other event."""
    if event.type != "setup_intent.succeeded":
        return None
    payment_method = event.data.object.to_dict().get("payment_method")
    if isinstance(payment_method, dict):  # expanded
        payment_method = payment_method.get("id")
    return await methods.webhook_card(gateways, api_key, payment_method) if isinstance(payment_method, str) and payment_method else None


async def apply_stripe_event(runtime: ServiceRuntime, session: AsyncSession, tenant: str, event: Any, card: dict[str, Any] | None = None) -> str:
    with tracer.start_as_current_span("apply_stripe_event", attributes={"billing.tenant": tenant, "stripe.event_type": event.type}):
        if not await _claim(runtime, session, "stripe", tenant, event.id, event.type):
            effect = "duplicate"
        else:
            obj = event.data.object.to_dict()
            if event.type.startswith("payment_intent."):
                attempt = await _attempt_for(session, tenant, dict(obj.get("metadata") or {}), obj["id"])
                effect = "unknown_payment" if attempt is None else await apply_outcome(runtime, session, attempt, stripe_outcome(obj, event.type))
            elif event.type.startswith("refund."):
                effect = await refunds.apply_stripe_refund(runtime, session, tenant, obj)
            elif event.type in {"setup_intent.succeeded", "setup_intent.setup_failed"}:
                ok = event.type == "setup_intent.succeeded"
                payment_method = obj.get("payment_method")
                payment_method = payment_method.get("id") if isinstance(payment_method, dict) else payment_method
                effect = await methods.card_setup_finished(
                    runtime, session, tenant, obj["id"], payment_method, ok, dict(obj.get("metadata") or {}), card=card if ok else None
                )
            else:
                effect = "ignored"
            await repo.set_effect(session, tenant, "stripe", event.id, effect)
        WEBHOOK_EVENTS.labels("stripe", effect).inc()
        return effect


async def apply_gocardless_event(runtime: ServiceRuntime, session: AsyncSession, gateways: Gateways, tenant: str, token: str, event: dict[str, Any]) -> str:
    kind, action = event.get("resource_type", ""), event.get("action", "")
    with tracer.start_as_current_span("apply_gocardless_event", attributes={"billing.tenant": tenant, "gocardless.event": f"{kind}.{action}"}):
        if not await _claim(runtime, session, "gocardless", tenant, event["id"], f"{kind}.{action}"):
            effect = "duplicate"
        else:
            links = event.get("links") or {}
            if kind == "payments" and links.get("payment"):
                effect = await _gocardless_payment(runtime, session, gateways, tenant, token, links["payment"], action, event.get("details") or {})
            elif kind == "mandates" and links.get("mandate"):
                effect = await _gocardless_mandate(runtime, session, gateways, tenant, token, links["mandate"])
            elif kind == "billing_requests" and links.get("mandate_request_mandate"):
                effect = await _gocardless_mandate(runtime, session, gateways, tenant, token, links["mandate_request_mandate"])
            else:
                effect = "ignored"
            await repo.set_effect(session, tenant, "gocardless", event["id"], effect)
        WEBHOOK_EVENTS.labels("gocardless", effect).inc()
        return effect


async def _gocardless_payment(
    runtime: ServiceRuntime, session: AsyncSession, gateways: Gateways, tenant: str, token: str, payment_id: str, action: str, details: dict[str, Any]
) -> str:
    current = await gateways.gocardless.payment(token, payment_id)
    attempt = await _attempt_for(session, tenant, current.metadata or {}, payment_id)
    if attempt is None:
        return "unknown_payment"
    if current.status == "failed" and action in GC_FAILURE_ACTIONS:
        # The failure's own event carries the bank's reason; any other event finds it in the read-back.
        outcome = Outcome("failed", payment_id, details.get("cause") or action, details.get("description") or f"payment {action}")
        return await apply_outcome(runtime, session, attempt, outcome, may_reverse=action in {"late_failure", "charged_back"})
    return await apply_outcome(runtime, session, attempt, current)


async def _gocardless_mandate(runtime: ServiceRuntime, session: AsyncSession, gateways: Gateways, tenant: str, token: str, mandate_id: str) -> str:
    status, metadata = await gateways.gocardless.mandate(token, mandate_id)
    if not metadata.get("method_id") or metadata.get("tenant") not in (None, tenant):
        return "unknown_mandate"
    return await methods.mandate_changed(runtime, session, tenant, metadata["method_id"], mandate_id, status)
