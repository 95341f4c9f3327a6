"""The webhook sender: a loop that takes due deliveries and POSTs them, signed, to their endpoints.

Same shape as the email sender: claim a batch in a short transaction, talk HTTP with no
transaction open, settle each delivery in its own transaction. Any 2xx is delivered; anything
else (another status, a timeout, a refused connection) is retried with exponential backoff until
`webhook_max_attempts`. A crash between the receiver's 2xx and our settle sends it again when the
lease ends, with the same `Webhook-Id`: receivers deduplicate on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
from opentelemetry import trace
from prometheus_client import Histogram

from billing_runtime.service import ServiceRuntime
from notify.config import Settings
from notify.delivery.service import backoff
from notify.webhook import repository as repo
from notify.webhook import service
from notify.webhook.models import WebhookDelivery

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SEND_SECONDS = Histogram("billing_webhook_send_seconds", "Time of one webhook POST", ["outcome"])


class WebhookSender:
    def __init__(self, runtime: ServiceRuntime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.lease = timedelta(seconds=settings.webhook_timeout * settings.sender_batch_size + 30)
        self.http: httpx.AsyncClient

    async def run(self) -> None:
        poll = self.settings.sender_poll_ms / 1000
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout, follow_redirects=False) as self.http:
            while True:
                try:
                    claimed = await self.send_due()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database may be away for a moment; the loop must outlive it
                    log.exception("webhook sender round failed; retrying")
                    claimed = 0
                if claimed < self.settings.sender_batch_size:
                    await asyncio.sleep(poll)

    async def send_due(self) -> int:
        async with self.runtime.sessions() as session, session.begin():
            claimed = await repo.claim_due(session, self.runtime.clock.now(), self.lease, self.settings.sender_batch_size)
        for delivery in claimed:
            try:
                await self.deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # the lease brings the row back later
                log.exception("webhook %s could not be settled; it will be retried when its lease ends", delivery.delivery_id)
        return len(claimed)

    async def deliver(self, delivery: WebhookDelivery) -> None:
        attributes = {"notify.delivery_id": delivery.delivery_id, "notify.attempt": delivery.attempts, "billing.event_type": delivery.event_type}
        with tracer.start_as_current_span("notify send webhook", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
            async with self.runtime.sessions() as session:
                endpoint = await repo.endpoint_by_id(session, delivery.endpoint_id)
            if endpoint is None or endpoint.deleted_at is not None:
                await self._failed(delivery, "the endpoint was deleted", None, permanent=True)
                return
            # The signature's timestamp is transport freshness, so it is the wall clock even
            # when business time is frozen (BILLING_CLOCK_FIXED_AT): receivers reject stale ones.
            signed_at = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "billing-notify-webhooks/1",
                "Webhook-Id": delivery.delivery_id,
                service.SIGNATURE_HEADER: service.signature_header(delivery.payload, signed_at, service.signing_secrets(endpoint, signed_at)),
            }
            started = time.perf_counter()
            try:
                response = await self.http.post(endpoint.url, content=delivery.payload.encode(), headers=headers)
            except httpx.HTTPError as exc:
                SEND_SECONDS.labels("error").observe(time.perf_counter() - started)
                span.record_exception(exc)
                await self._failed(delivery, f"{type(exc).__name__}: {exc}", None, permanent=False)
                return
            ok = 200 <= response.status_code < 300
            SEND_SECONDS.labels("sent" if ok else "error").observe(time.perf_counter() - started)
            if ok:
                async with self.runtime.transaction() as session:
                    await service.settle_sent(self.runtime, session, delivery, endpoint.url, response.status_code, self.runtime.clock.now())
                return
            await self._failed(delivery, f"HTTP {response.status_code}", response.status_code, permanent=False)

    async def _failed(self, delivery: WebhookDelivery, error: str, status_code: int | None, *, permanent: bool) -> None:
        now = self.runtime.clock.now()
        if permanent or delivery.attempts >= self.settings.webhook_max_attempts:
            status, next_at = "failed", None
        else:
            status, next_at = "pending", now + backoff(delivery.attempts, self.settings.retry_backoff_seconds, self.settings.retry_backoff_max_seconds)
        async with self.runtime.transaction() as session:
            if await repo.settle(session, delivery.delivery_id, status=status, next_attempt_at=next_at, last_error=error[:2000], last_status_code=status_code):
                service.WEBHOOKS.labels("failed" if status == "failed" else "retry").inc()
        log.warning("webhook %s attempt %d failed (%s): %s", delivery.delivery_id, delivery.attempts, status, error)
