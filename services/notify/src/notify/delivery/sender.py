"""The sender: a loop that takes due deliveries and hands them to the SMTP server.

Each round claims a small batch in one short transaction, talks SMTP with no transaction open,
then settles each message in a transaction of its own (sent + NotificationDelivered, or a
retry/failure). A crash after the SMTP hand-over and before the settle leaves the row claimed;
when the lease runs out it is sent again with the same Message-ID, so the duplicate is
recognisable. That is the best SMTP allows: it has no idempotent submit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import aiosmtplib
import httpx
from opentelemetry import trace
from prometheus_client import Histogram

from billing_runtime.conventions import SHARED_PATH_PREFIX
from billing_runtime.service import ServiceRuntime
from notify.config import Settings
from notify.delivery import repository as repo
from notify.delivery import service
from notify.delivery.models import Delivery

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SEND_SECONDS = Histogram("billing_email_send_seconds", "Time of one SMTP hand-over", ["outcome"])


class AttachmentUnavailable(Exception):
    """A document to attach could not be fetched. Permanent for a 4xx other than 408/429 (the
    document is not there and will not come), otherwise worth another attempt."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def document_url(url: str, base_url: str | None, *, shared: bool = False) -> str | None:
    """An absolute URL to fetch `url` from: itself, or resolved against invoicing's base URL
    when relative; None when relative and no base is configured. A shared link is fetched from
    invoicing's base URL when one is configured, even when it is absolute: its public address
    (an ingress, a host port) is for buyers and need not be reachable from where notify runs."""
    if shared and base_url and SHARED_PATH_PREFIX in url:
        return urljoin(base_url.rstrip("/") + "/", url[url.rindex(SHARED_PATH_PREFIX) :].lstrip("/"))
    if urlsplit(url).scheme in ("http", "https"):
        return url
    if base_url is None:
        return None
    return urljoin(base_url.rstrip("/") + "/", url.lstrip("/"))


async def fetch_attachments(client: httpx.AsyncClient, delivery: Delivery, max_bytes: int, base_url: str | None) -> list[tuple[str, str, bytes]]:
    """(file name, content type, bytes) of each document of the delivery, fetched now, over HTTP.
    A relative URL is resolved against invoicing's `base_url` (left out when none is configured);
    a shared link needs no credential, any other relative URL is fetched as the seller
    (`X-Tenant-Id`, for invoicing behind a trusted gateway)."""
    fetched: list[tuple[str, str, bytes]] = []
    for item in delivery.attachments:
        url = document_url(item["url"], base_url, shared=bool(item.get("shared")))
        if url is None:
            log.warning("email %s: %s is relative and NOTIFY_DOCUMENTS_BASE_URL is unset; not attached", delivery.delivery_id, item["url"])
            continue
        headers = {} if urlsplit(item["url"]).scheme or item.get("shared") else {"X-Tenant-Id": delivery.tenant}
        try:
            response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise AttachmentUnavailable(f"{url}: {type(exc).__name__}: {exc}", permanent=False) from exc
        if response.status_code != 200:
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise AttachmentUnavailable(f"{url}: HTTP {response.status_code}", permanent=permanent)
        if len(response.content) > max_bytes:
            raise AttachmentUnavailable(f"{url}: {len(response.content)} bytes, more than {max_bytes}", permanent=True)
        fetched.append((item["filename"], item["content_type"], response.content))
    return fetched


def is_permanent(exc: BaseException) -> bool:
    """A 5xx about the recipient or the content will not change by trying again; anything else
    (connection refused, timeouts, 4xx, authentication set up wrong) might."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    if isinstance(exc, (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)):
        return exc.code >= 500
    return False


class EmailSender:
    def __init__(self, runtime: ServiceRuntime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        # Long enough for a whole batch to time out one message after another.
        self.lease = timedelta(seconds=(settings.smtp_timeout + settings.attachment_timeout) * settings.sender_batch_size + 30)
        self.http: httpx.AsyncClient

    async def run(self) -> None:
        poll = self.settings.sender_poll_ms / 1000
        async with httpx.AsyncClient(timeout=self.settings.attachment_timeout, follow_redirects=True) as self.http:
            await self._loop(poll)

    async def _loop(self, poll: float) -> None:
        while True:
            try:
                sent = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment; the loop must outlive it
                log.exception("email sender round failed; retrying")
                sent = 0
            if sent < self.settings.sender_batch_size:
                await asyncio.sleep(poll)

    async def send_due(self) -> int:
        """Claim, send and settle one batch of due deliveries; returns how many were claimed."""
        async with self.runtime.sessions() as session, session.begin():
            claimed = await repo.claim_due(session, self.runtime.clock.now(), self.lease, self.settings.sender_batch_size)
        for delivery in claimed:
            try:
                await self.deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the settle could not commit: the lease brings the row back later
                log.exception("email %s could not be settled; it will be retried when its lease ends", delivery.delivery_id)
        return len(claimed)

    async def deliver(self, delivery: Delivery) -> None:
        with tracer.start_as_current_span(
            "notify send email",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "notify.delivery_id": delivery.delivery_id,
                "notify.template": delivery.template,
                "notify.attempt": delivery.attempts,
            },
        ) as span:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                attachments = await fetch_attachments(self.http, delivery, self.settings.attachment_max_bytes, self.settings.documents_base_url)
                message = service.build_message(delivery, self.runtime.clock.now(), attachments)
                await aiosmtplib.send(
                    message,
                    hostname=self.settings.smtp_host,
                    port=self.settings.smtp_port,
                    timeout=self.settings.smtp_timeout,
                    username=self.settings.smtp_username,
                    password=self.settings.smtp_password.get_secret_value() if self.settings.smtp_password else None,
                )
            except (aiosmtplib.SMTPException, OSError, TimeoutError, AttachmentUnavailable) as exc:
                error = exc
            except ValueError as exc:  # a message that cannot even be built will never be sent
                error = exc
            SEND_SECONDS.labels("sent" if error is None else "error").observe(time.perf_counter() - started)
            if error is None:
                async with self.runtime.transaction() as session:
                    await service.settle_sent(self.runtime, session, delivery, self.runtime.clock.now())
                return
            span.record_exception(error)
            permanent = isinstance(error, ValueError) or is_permanent(error) or (isinstance(error, AttachmentUnavailable) and error.permanent)
            async with self.runtime.transaction() as session:
                status = await service.settle_failed(
                    session,
                    delivery,
                    f"{type(error).__name__}: {error}",
                    now=self.runtime.clock.now(),
                    permanent=permanent,
                    max_attempts=self.settings.max_attempts,
                    backoff_seconds=self.settings.retry_backoff_seconds,
                    backoff_max_seconds=self.settings.retry_backoff_max_seconds,
                )
            log.warning("email %s attempt %d failed (%s): %s", delivery.delivery_id, delivery.attempts, status, error)
