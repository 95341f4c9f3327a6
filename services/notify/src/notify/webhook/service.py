"""Partner webhooks: endpoints per partner subscribed to event types, each delivery signed the
way Stripe signs (`Billing-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`, one `v1`
per valid secret while a rotated secret is in its grace period), retried with backoff, and
carrying a stable `Webhook-Id` (the delivery id) so the receiver can drop a repeat.

Queuing happens in the event's inbox transaction (a redelivered event queues nothing: the
delivery id is derived from endpoint and event); sending in the webhook sender, with no
transaction open over HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    AccountReinstated,
    AccountSuspended,
    CloudEvent,
    CollectingMethodChanged,
    ComparisonReportReady,
    CreditNoteIssued,
    CustomerUpserted,
    DunningCaseClosed,
    DunningCaseOpened,
    DunningStepReached,
    EventData,
    InvoiceIssued,
    InvoiceSettled,
    MandateChanged,
    NotificationDelivered,
    PaymentFailed,
    PaymentRefunded,
    PaymentRetryRequested,
    PaymentSucceeded,
    derived_event_id,
)
from billing_events.envelope import event_to_json
from billing_runtime.crypto import Keyring
from billing_runtime.errors import BillingError, NotFound
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from notify.webhook import repository as repo
from notify.webhook.models import WebhookDelivery, WebhookEndpoint
from notify.webhook.schemas import EndpointIn, EndpointOut, EndpointWithSecret

tracer = trace.get_tracer(__name__)

WEBHOOKS = Counter("billing_webhooks_total", "Webhook deliveries by outcome (queued, sent, retry, failed)", ["outcome"])
start_at_zero(WEBHOOKS, ("queued", "sent", "retry", "failed"))

# What a partner system can subscribe to: what happens to its invoices, payments and accounts. Once
# each, in the order the README lists them (tests/test_webhook_events.py holds it to that list).
WEBHOOK_EVENTS: tuple[type[EventData], ...] = (
    CustomerUpserted,  # e.g. a billing profile its end customer changed in the portal
    InvoiceIssued,
    CreditNoteIssued,
    InvoiceSettled,
    ComparisonReportReady,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    MandateChanged,
    CollectingMethodChanged,  # the card (brand, last four) or mandate its customer's invoices are collected from
    DunningCaseOpened,
    DunningStepReached,
    PaymentRetryRequested,
    AccountSuspended,
    AccountReinstated,
    DunningCaseClosed,
)
WEBHOOK_EVENT_TYPES = frozenset(model.event_type for model in WEBHOOK_EVENTS)
SIGNATURE_HEADER = "Billing-Signature"

# Fixed: changing it would give every queued delivery a new id (and a second copy).
_NAMESPACE = uuid.UUID("5e1d9c3a-7b2f-5d48-a6e0-2c9f8b1d3e47")


class UnknownEventType(BillingError):
    status_code = 422
    code = "unknown_event_type"


def webhook_delivery_id(endpoint_id: str, event_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"webhook:{endpoint_id}:{event_id}"))


def endpoint_id_for(tenant: str, idempotency_key: str) -> str:
    """The endpoint a create with this Idempotency-Key makes, the same on every retry."""
    return str(uuid.uuid5(_NAMESPACE, f"endpoint:{tenant}:{idempotency_key}"))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(payload: str, timestamp: int, secret: str) -> str:
    """The hex HMAC-SHA256 of `"{timestamp}.{payload}"` under `secret`, as Stripe computes v1."""
    return hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    found = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and now < endpoint.previous_secret_expires_at:
        found.append(endpoint.previous_secret)
    return found


def signature_header(payload: str, now: datetime, secrets_: list[str]) -> str:
    timestamp = int(now.timestamp())
    return ",".join([f"t={timestamp}", *(f"v1={sign(payload, timestamp, s)}" for s in secrets_)])


def verify(payload: str, header: str, secret: str, now: datetime, tolerance_seconds: int = 300) -> bool:
    """What a receiver does (and our tests do): a `v1` matching under its secret, with a
    timestamp within the tolerance. Compared in constant time."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        return False
    expected = sign(payload, timestamp, secret)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        endpoint_id=endpoint.endpoint_id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        created_at=endpoint.created_at,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


def _checked_types(event_types: list[str]) -> list[str]:
    unknown = sorted({t for t in event_types if t != "*" and t not in WEBHOOK_EVENT_TYPES})
    if unknown:
        raise UnknownEventType(f"cannot subscribe to {', '.join(unknown)}", field="event_types", known=sorted(WEBHOOK_EVENT_TYPES))
    return sorted(set(event_types))


async def create_endpoint(
    session: AsyncSession, keyring: Keyring, tenant: str, body: EndpointIn, now: datetime, idempotency_key: str | None
) -> tuple[EndpointWithSecret, bool]:
    """Create an endpoint with a fresh secret; (endpoint with its secret, created). With an
    Idempotency-Key, a retry returns the endpoint made the first time (secret included)."""
    endpoint = WebhookEndpoint(
        endpoint_id=endpoint_id_for(tenant, idempotency_key) if idempotency_key else str(uuid.uuid4()),
        tenant=tenant,
        url=body.url,
        event_types=_checked_types(body.event_types),
        description=body.description,
        secret=new_secret(),
        created_at=now,
    )
    created = await repo.insert_endpoint(session, keyring, endpoint)
    stored = await repo.get_endpoint(session, tenant, endpoint.endpoint_id)
    if stored is None:
        raise NotFound(f"webhook endpoint {endpoint.endpoint_id} was deleted", code="webhook_endpoint_not_found")
    return EndpointWithSecret(**endpoint_out(stored).model_dump(), secret=repo.opened(keyring, stored).secret), created


async def list_endpoints(session: AsyncSession, tenant: str) -> list[EndpointOut]:
    return [endpoint_out(e) for e in await repo.list_endpoints(session, tenant)]


async def get_endpoint(session: AsyncSession, tenant: str, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint:
    endpoint = await repo.get_endpoint(session, tenant, endpoint_id, for_update=for_update)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}", code="webhook_endpoint_not_found")
    return endpoint


async def delete_endpoint(session: AsyncSession, tenant: str, endpoint_id: str, now: datetime) -> None:
    """Stop delivering to the endpoint; what is still queued for it fails. Deleting twice is a 404."""
    await get_endpoint(session, tenant, endpoint_id, for_update=True)
    await repo.update_endpoint(session, endpoint_id, deleted_at=now)


async def rotate_secret(session: AsyncSession, keyring: Keyring, tenant: str, endpoint_id: str, grace: timedelta, now: datetime) -> EndpointWithSecret:
    """A new secret; the old one keeps signing (beside the new) for `grace`."""
    endpoint = await get_endpoint(session, tenant, endpoint_id, for_update=True)
    secret = new_secret()
    await repo.set_secrets(session, keyring, endpoint, secret, repo.opened(keyring, endpoint).secret, now + grace)
    rotated = await get_endpoint(session, tenant, endpoint_id)
    return EndpointWithSecret(**endpoint_out(rotated).model_dump(), secret=secret)


async def fan_out(session: AsyncSession, event: CloudEvent[Any], now: datetime) -> int:
    """Queue the event for each of the tenant's endpoints subscribed to it; how many were new."""
    with tracer.start_as_current_span("notify webhook fan-out", attributes={"billing.event_type": event.type}):
        endpoints = await repo.subscribed(session, event.tenant, event.type)
        if not endpoints:
            return 0
        payload = event_to_json(event)
        account_id = event.data.partition_key()
        seller_id = str(getattr(event.data, "seller_id", None) or getattr(getattr(event.data, "seller", None), "account_id", None) or event.tenant)
        queued = 0
        for endpoint in endpoints:
            delivery = WebhookDelivery(
                delivery_id=webhook_delivery_id(endpoint.endpoint_id, event.id),
                tenant=event.tenant,
                endpoint_id=endpoint.endpoint_id,
                event_id=event.id,
                event_type=event.type,
                account_id=account_id,
                seller_id=seller_id,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            if await repo.insert_delivery(session, delivery):
                queued += 1
                WEBHOOKS.labels("queued").inc()
        return queued


def delivered_event(runtime: ServiceRuntime, delivery: WebhookDelivery, endpoint_url: str, at: datetime) -> CloudEvent[Any]:
    """NotificationDelivered (channel webhook) for a delivered webhook; id derived from the delivery's."""
    data = NotificationDelivered(
        notification_id=delivery.delivery_id,
        account_id=delivery.account_id,
        seller_id=delivery.seller_id,
        channel="webhook",
        template=delivery.event_type,
        recipient=endpoint_url,
        cause_event_id=delivery.event_id,
        delivered_at=at,
    )
    event_id = derived_event_id("notify", "delivered", delivery.delivery_id)
    return runtime.event(data, tenant=delivery.tenant, event_id=event_id, subject=delivery.event_id)
