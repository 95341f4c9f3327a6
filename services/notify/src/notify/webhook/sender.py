"""The webhook sender: the webhook channel of the sending pool (notify.sending), POSTing due
deliveries, signed, to their endpoints.

The pool claims due deliveries in short transactions (the endpoints of a claimed batch are read
in the same transaction, in one query), runs up to `WEBHOOK_CONCURRENCY` POSTs at once with no
transaction open, and settles outcomes in batches. Any 2xx is delivered; anything else (another
status, a timeout, a refused connection) is retried with exponential backoff until
`webhook_max_attempts`. A crash between the receiver's 2xx and our settle sends it again when the
lease ends, with the same `Webhook-Id`: receivers deduplicate on it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.service import ServiceRuntime
from billing_runtime.tracing import traced
from notify.config import Settings
from notify.delivery.service import backoff
from notify.sending import LeasedQueue, PoolSettings, SendingPool
from notify.webhook import destination, service
from notify.webhook import repository as repo
from notify.webhook.destination import AllowList, DestinationRefused
from notify.webhook.models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SEND_SECONDS = Histogram("billing_webhook_send_seconds", "Time of one webhook POST", ["outcome"])


@dataclass(frozen=True)
class Claimed:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint | None


@dataclass(frozen=True)
class WebhookOutcome:
    delivery: WebhookDelivery
    url: str | None
    status_code: int | None
    event: CloudEvent[Any] | None = None
    error: str | None = None
    permanent: bool = False


class WebhookSender:
    """The webhook channel of the sending pool."""

    name = "webhook"

    def __init__(self, runtime: ServiceRuntime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        pool = PoolSettings(settings.webhook_concurrency, settings.sender_batch_size, settings.sender_poll_ms / 1000)
        self.lease = timedelta(seconds=settings.webhook_timeout * pool.rounds + 30)
        self.queue = LeasedQueue(repo.DELIVERY, WebhookDelivery, self.lease)
        self.pool: SendingPool[Claimed, WebhookOutcome] = SendingPool(runtime, self, pool)
        self.allow = AllowList.parse(settings.webhook_allowed_destinations)
        self.http: httpx.AsyncClient

    async def run(self) -> None:
        await self.pool.run()

    def key(self, item: Claimed) -> str:
        return item.delivery.delivery_id

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout, follow_redirects=False) as self.http:
            yield

    async def claim(self, session: AsyncSession, now: datetime, limit: int) -> list[Claimed]:
        claimed = await self.queue.claim(session, now, limit)
        endpoints = await repo.endpoints_by_id(session, self.runtime.sealing(), sorted({d.endpoint_id for d in claimed}))
        return [Claimed(d, endpoints.get(d.endpoint_id)) for d in claimed]

    async def deliver(self, item: Claimed) -> WebhookOutcome:
        delivery, endpoint = item.delivery, item.endpoint
        attributes: dict[str, AttributeValue] = {
            "notify.delivery_id": delivery.delivery_id,
            "notify.attempt": delivery.attempts,
            "billing.event_type": delivery.event_type,
        }
        with tracer.start_as_current_span("notify send webhook", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
            if endpoint is None or endpoint.deleted_at is not None:
                return WebhookOutcome(delivery, None, None, error="the endpoint was deleted", permanent=True)
            # The signature's timestamp is transport freshness, so it is the wall clock even
            # when business time is frozen (BILLING_CLOCK_FIXED_AT): receivers reject stale ones.
            signed_at = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "billing-notify-webhooks/1",
                "Webhook-Id": delivery.delivery_id,
                service.SIGNATURE_HEADER: service.signature_header(delivery.payload, signed_at, service.signing_secrets(endpoint, signed_at)),
            }
            try:
                # Resolved and checked now, and the POST goes to the address checked (no DNS rebinding).
                target = await destination.check(endpoint.url, self.allow, "send")
            except DestinationRefused as refused:
                # Nothing was sent; the partner learns why, never what answers there.
                return WebhookOutcome(delivery, endpoint.url, None, error=f"destination refused: {refused.code}", permanent=True)
            headers["Host"] = target.host
            started = time.perf_counter()
            try:
                response = await self.http.post(target.url, content=delivery.payload.encode(), headers=headers, extensions={"sni_hostname": target.server_name})
            except httpx.HTTPError as exc:
                SEND_SECONDS.labels("error").observe(time.perf_counter() - started)
                span.record_exception(exc)
                # The exception's text (an address, an OS error) stays in the trace, not in the partner's view.
                return WebhookOutcome(delivery, endpoint.url, None, error=f"no answer ({type(exc).__name__})")
            ok = 200 <= response.status_code < 300
            SEND_SECONDS.labels("sent" if ok else "error").observe(time.perf_counter() - started)
            if not ok:
                return WebhookOutcome(delivery, endpoint.url, response.status_code, error=f"HTTP {response.status_code}")
            # Stamped now: settle() writes it to the outbox after this span has ended.
            event = traced(service.delivered_event(self.runtime, delivery, endpoint.url, self.runtime.clock.now()))
            return WebhookOutcome(delivery, endpoint.url, response.status_code, event)

    async def settle(self, session: AsyncSession, outcomes: Sequence[WebhookOutcome]) -> None:
        now = self.runtime.clock.now()
        sent = [o for o in outcomes if o.error is None and o.event is not None]
        marked = await repo.mark_sent_many(session, [(o.delivery.delivery_id, o.status_code or 200, now) for o in sent])
        events = [o.event for o in sent if o.delivery.delivery_id in marked and o.event is not None]
        if events:
            await self.runtime.outbox.add(session, *events)
            service.WEBHOOKS.labels("sent").inc(len(events))
        for o in outcomes:
            if o.error is None:
                continue
            if o.permanent or o.delivery.attempts >= self.settings.webhook_max_attempts:
                status, next_at = "failed", None
            else:
                status, next_at = "pending", now + backoff(o.delivery.attempts, self.settings.retry_backoff_seconds, self.settings.retry_backoff_max_seconds)
            settled = await repo.settle(
                session, o.delivery.delivery_id, status=status, next_attempt_at=next_at, last_error=o.error[:2000], last_status_code=o.status_code
            )
            if settled:
                service.WEBHOOKS.labels("failed" if status == "failed" else "retry").inc()
            log.warning("webhook %s attempt %d failed (%s): %s", o.delivery.delivery_id, o.delivery.attempts, status, o.error)
