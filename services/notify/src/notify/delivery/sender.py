"""The email sender: the email channel of the sending pool (notify.sending).

The pool claims due deliveries in short transactions and runs up to `SENDER_CONCURRENCY`
deliveries at once; each delivery fetches its documents (concurrently, each document's bytes
once: see `Documents`), composes the MIME message straight to bytes (notify.delivery.mime; in a
worker thread when the attachments pass 2 MB, so base64 of a 20 MB attachment does not stall the
event loop), and hands it over on an SMTP connection kept open across messages (`SmtpConnections`). Outcomes are settled in batches: sent +
NotificationDelivered, or a retry/failure.

A crash after the SMTP hand-over and before the settle leaves the row claimed; when the lease
runs out it is sent again with the same Message-ID, so the duplicate is recognisable. That is the
best SMTP allows: it has no idempotent submit. At most the deliveries in hand at the crash
(`SENDER_CONCURRENCY` being sent, plus those whose outcome was not yet committed) can be sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiosmtplib
import httpx
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.conventions import SHARED_PATH_PREFIX
from billing_runtime.service import ServiceRuntime
from billing_runtime.tracing import traced
from notify.config import Settings
from notify.delivery import mime, service
from notify.delivery import repository as repo
from notify.delivery.models import Delivery
from notify.sending import LeasedQueue, PoolSettings, SendingPool

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SEND_SECONDS = Histogram(
    "billing_email_send_seconds",
    "Time of one delivery attempt (documents, message, SMTP hand-over)",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FETCH_SECONDS = Histogram(
    "billing_email_document_fetch_seconds",
    "Time to fetch one document to attach (from memory when fetched before)",
    ["source"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FETCH_THROTTLED = Counter(
    "billing_email_document_fetch_throttled_total",
    "Document fetches invoicing answered 429/503 with a Retry-After: every fetch of the process paused that long, then the fetch was tried again",
)
THROTTLED_STATUSES = (429, 503)


def retry_after_seconds(response: httpx.Response) -> float:
    """The wait a 429/503 asks for (`Retry-After` in seconds; 1 s when absent or an HTTP date)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


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


class Documents:
    """The documents deliveries attach, fetched over HTTP: those of one delivery concurrently, at
    most `concurrency` at a time for the whole process (invoicing renders a PDF on its first
    download: a month close must not ask it for two thousand at once), and each document's bytes
    once: a fetch already under way is joined, and bytes fetched in the last `ttl` seconds (up to
    `cache_bytes` in all) are served from memory, to a retry or to another email attaching them.

    A relative URL is resolved against invoicing's `base_url` (left out when none is configured);
    a shared link needs no credential, any other relative URL is fetched as the seller
    (`X-Tenant-Id`, for invoicing behind a trusted gateway).

    Throttled (429 or 503 with `Retry-After`, as invoicing's per-address limit on shared links
    answers): every fetch of the process waits that long, then the refused one is tried again,
    for at most `throttled_wait` seconds in all, and the delivery does not fail over it. Each
    refused fetch failing its delivery instead put the email back by the retry backoff (30 s,
    doubling), and a month close's mail trickled out at a few emails a second."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str | None,
        max_bytes: int,
        concurrency: int,
        cache_bytes: int,
        ttl: float = 300.0,
        throttled_wait: float = 30.0,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.max_bytes = max_bytes
        self.cache_bytes = cache_bytes
        self.ttl = ttl
        self.throttled_wait = throttled_wait
        self._resume_at = 0.0
        self._slots = asyncio.Semaphore(concurrency)
        self._fetching: dict[tuple[str, str | None], asyncio.Future[bytes]] = {}
        self._kept: OrderedDict[tuple[str, str | None], tuple[float, bytes]] = OrderedDict()
        self._kept_bytes = 0

    async def of(self, delivery: Delivery) -> list[tuple[str, str, bytes]]:
        """(file name, content type, bytes) of each document of the delivery, in its order."""
        wanted: list[tuple[dict[str, Any], str, str | None]] = []
        for item in delivery.attachments:
            url = document_url(item["url"], self.base_url, shared=bool(item.get("shared")))
            if url is None:
                log.warning("email %s: %s is relative and NOTIFY_DOCUMENTS_BASE_URL is unset; not attached", delivery.delivery_id, item["url"])
                continue
            as_tenant = None if urlsplit(item["url"]).scheme or item.get("shared") else delivery.tenant
            wanted.append((item, url, as_tenant))
        contents = await asyncio.gather(*(self.get(url, as_tenant) for _, url, as_tenant in wanted))
        return [(item["filename"], item["content_type"], content) for (item, _, _), content in zip(wanted, contents, strict=True)]

    async def get(self, url: str, as_tenant: str | None) -> bytes:
        key = (url, as_tenant)
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.ttl:
            self._kept.move_to_end(key)
            FETCH_SECONDS.labels("memory").observe(0)
            return kept[1]
        running = self._fetching.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._fetching[key] = future
        try:
            content = await self._fetch(url, as_tenant)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._fetching.pop(key, None)
        future.set_result(content)
        self._keep(key, content)
        return content

    async def _fetch(self, url: str, as_tenant: str | None) -> bytes:
        headers = {"X-Tenant-Id": as_tenant} if as_tenant else {}
        give_up_at = time.monotonic() + self.throttled_wait
        while True:
            await self._not_throttled()
            async with self._slots:
                with tracer.start_as_current_span("notify fetch document", kind=trace.SpanKind.CLIENT, attributes={"url.path": urlsplit(url).path}):
                    started = time.perf_counter()
                    try:
                        response = await self.client.get(url, headers=headers)
                    except httpx.HTTPError as exc:
                        raise AttachmentUnavailable(f"{url}: {type(exc).__name__}: {exc}", permanent=False) from exc
                    finally:
                        FETCH_SECONDS.labels("http").observe(time.perf_counter() - started)
            if response.status_code not in THROTTLED_STATUSES or "retry-after" not in response.headers:
                break
            wait = retry_after_seconds(response)
            if time.monotonic() + wait > give_up_at:
                break
            FETCH_THROTTLED.inc()
            self._resume_at = max(self._resume_at, time.monotonic() + wait)
        if response.status_code != 200:
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
            raise AttachmentUnavailable(f"{url}: HTTP {response.status_code}", permanent=permanent)
        if len(response.content) > self.max_bytes:
            raise AttachmentUnavailable(f"{url}: {len(response.content)} bytes, more than {self.max_bytes}", permanent=True)
        return response.content

    async def _not_throttled(self) -> None:
        while (wait := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    def _keep(self, key: tuple[str, str | None], content: bytes) -> None:
        if len(content) > self.cache_bytes:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._kept_bytes -= len(old[1])
        self._kept[key] = (time.monotonic(), content)
        self._kept_bytes += len(content)
        while self._kept_bytes > self.cache_bytes:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._kept_bytes -= len(dropped)


def is_permanent(exc: BaseException) -> bool:
    """A 5xx about the recipient or the content will not change by trying again; anything else
    (connection refused, timeouts, 4xx, authentication set up wrong) might."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    if isinstance(exc, (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)):
        return exc.code >= 500
    return False


class SmtpConnections:
    """SMTP connections kept open across messages: a delivery takes an idle one (or opens one),
    gives it back after a clean hand-over, and drops it after any error (the server's state for
    it is then unknown). A connection idle for longer than `idle_seconds` is closed rather than
    reused: servers drop idle clients, and the next message would find out the slow way."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def take(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected client, and whether it was used before."""
        while self._idle:
            smtp, used_at = self._idle.pop()
            if smtp.is_connected and time.monotonic() - used_at < self.settings.smtp_idle_seconds:
                return smtp, True
            await self.drop(smtp)
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        )
        await smtp.connect()
        if smtp.last_ehlo_response is None and smtp.last_helo_response is None:
            # Greeted now, so the first message of a connection sees the server's extensions (8BITMIME) too.
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        return smtp, False

    def give_back(self, smtp: aiosmtplib.SMTP) -> None:
        self._idle.append((smtp, time.monotonic()))

    async def drop(self, smtp: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(Exception):
            if smtp.is_connected:
                await asyncio.wait_for(smtp.quit(), timeout=2.0)
        with contextlib.suppress(Exception):
            smtp.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            await self.drop(smtp)


# Attachments up to this size are composed on the event loop (well under a millisecond); larger
# ones in a worker thread, so that base64 of a 20 MB attachment does not stall the loop.
COMPOSE_INLINE_BYTES = 2_000_000


def _serialised(delivery: Delivery, now: datetime, attachments: list[tuple[str, str, bytes]]) -> bytes:
    """The message as the SMTP DATA carries it (notify.delivery.mime)."""
    return mime.compose(delivery, service.message_id(delivery), now, attachments)


def _ascii(delivery: Delivery) -> bool:
    return (delivery.from_email + (delivery.recipient or "")).isascii()


@dataclass(frozen=True)
class EmailOutcome:
    delivery: Delivery
    sent_at: datetime | None
    event: CloudEvent[Any] | None = None
    error: str | None = None
    permanent: bool = False


class EmailSender:
    """The email channel of the sending pool."""

    name = "email"

    def __init__(self, runtime: ServiceRuntime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        pool = PoolSettings(settings.sender_concurrency, settings.sender_batch_size, settings.sender_poll_ms / 1000)
        waiting_for_documents = math.ceil(settings.sender_concurrency / settings.documents_concurrency)
        # Long enough for a claimed row to wait for a round of deliveries that all time out, then time out itself.
        # A fetch may wait as long again while invoicing throttles it (Documents).
        self.lease = timedelta(seconds=(settings.smtp_timeout + 2 * settings.attachment_timeout * waiting_for_documents) * pool.rounds + 30)
        self.queue = LeasedQueue(repo.DELIVERY, Delivery, self.lease)
        self.pool: SendingPool[Delivery, EmailOutcome] = SendingPool(runtime, self, pool)
        self.smtp = SmtpConnections(settings)
        self.documents: Documents

    async def run(self) -> None:
        await self.pool.run()

    def key(self, item: Delivery) -> str:
        return item.delivery_id

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=self.settings.documents_concurrency * 2, max_keepalive_connections=self.settings.documents_concurrency * 2)
        async with httpx.AsyncClient(timeout=self.settings.attachment_timeout, follow_redirects=True, limits=limits) as client:
            self.documents = Documents(
                client,
                base_url=self.settings.documents_base_url,
                max_bytes=self.settings.attachment_max_bytes,
                concurrency=self.settings.documents_concurrency,
                cache_bytes=self.settings.document_cache_bytes,
                throttled_wait=self.settings.attachment_timeout,
            )
            try:
                yield
            finally:
                await self.smtp.close()

    async def claim(self, session: AsyncSession, now: datetime, limit: int) -> list[Delivery]:
        return await self.queue.claim(session, now, limit)

    async def deliver(self, delivery: Delivery) -> EmailOutcome:
        with tracer.start_as_current_span(
            "notify send email",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "notify.delivery_id": delivery.delivery_id,
                "notify.template": delivery.template,
                "notify.attempt": delivery.attempts,
                "notify.attachments": len(delivery.attachments),
            },
        ) as span:
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                attachments = await self.documents.of(delivery)
                await self._hand_over(delivery, attachments)
            except (aiosmtplib.SMTPException, OSError, TimeoutError, AttachmentUnavailable) as exc:
                error = exc
            except ValueError as exc:  # a message that cannot even be built will never be sent
                error = exc
            SEND_SECONDS.labels("sent" if error is None else "error").observe(time.perf_counter() - started)
            now = self.runtime.clock.now()
            if error is None:
                # Stamped now: settle() writes it to the outbox after this span has ended.
                return EmailOutcome(delivery, now, traced(service.delivered_event(self.runtime, delivery, now)))
            span.record_exception(error)
            permanent = isinstance(error, ValueError) or is_permanent(error) or (isinstance(error, AttachmentUnavailable) and error.permanent)
            log.warning("email %s attempt %d failed: %s", delivery.delivery_id, delivery.attempts, error)
            return EmailOutcome(delivery, None, error=f"{type(error).__name__}: {error}", permanent=permanent)

    async def _hand_over(self, delivery: Delivery, attachments: list[tuple[str, str, bytes]]) -> None:
        """Build the message off the event loop and send it on a kept-open connection. A kept
        connection the server closed meanwhile is replaced once, at once."""
        if delivery.recipient is None:
            raise ValueError("a delivery without a recipient cannot be sent")
        for may_retry in (True, False):
            smtp, reused = await self.smtp.take()
            try:
                now = self.runtime.clock.now()
                if sum(len(content) for _, _, content in attachments) <= COMPOSE_INLINE_BYTES:
                    data = _serialised(delivery, now, attachments)
                else:
                    data = await asyncio.to_thread(_serialised, delivery, now, attachments)
                options = [] if _ascii(delivery) else ["SMTPUTF8"]
                with tracer.start_as_current_span("notify smtp", kind=trace.SpanKind.CLIENT, attributes={"notify.smtp_reused": reused}):
                    await smtp.sendmail(delivery.from_email, [delivery.recipient], data, mail_options=options)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                await self.smtp.drop(smtp)
                if reused and may_retry:
                    continue
                raise
            except Exception:
                await self.smtp.drop(smtp)
                raise
            except BaseException:  # cancelled: no goodbye to the server
                smtp.close()
                raise
            self.smtp.give_back(smtp)
            return

    async def settle(self, session: AsyncSession, outcomes: Sequence[EmailOutcome]) -> None:
        # A hand-over that succeeded has its time (and no error); a failed one neither.
        sent = [(o.delivery, o.sent_at, o.event) for o in outcomes if o.error is None and o.sent_at is not None]
        await service.settle_sent_many(self.runtime, session, sent)
        for o in outcomes:
            if o.error is not None:
                status = await service.settle_failed(
                    session,
                    o.delivery,
                    o.error,
                    now=self.runtime.clock.now(),
                    permanent=o.permanent,
                    max_attempts=self.settings.max_attempts,
                    backoff_seconds=self.settings.retry_backoff_seconds,
                    backoff_max_seconds=self.settings.retry_backoff_max_seconds,
                )
                log.info("email %s attempt %d settled %s", o.delivery.delivery_id, o.delivery.attempts, status)
