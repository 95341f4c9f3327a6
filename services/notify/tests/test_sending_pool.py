"""The sending pool against the real servers (Tansu, PostgreSQL, aiosmtpd, a local HTTP document
server): a burst of invoice emails goes out once each with its own PDF over a few kept-open SMTP
connections, each document is fetched once even across retries, and webhooks share the claim."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from notify_testkit import attachments, smtp_server
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from billing_events import DocumentLink, InvoiceIssued, account_id, new_event
from billing_events.topics import NOTIFICATIONS
from billing_runtime.testing import eventually, read_events, serve
from notify.config import Settings
from notify.delivery import repository as repo
from notify.delivery.sender import Documents
from notify.main import build
from notify.sending import LeasedQueue
from notify.webhook import repository as webhook_repo
from notify.webhook.models import WebhookDelivery

# Events are handed to notify in process (the `publish` fixture delivers them through the runtime's
# dispatch), so it is served without a broker consumer (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


class CountingMailbox:
    """Messages by recipient, and the client port each came from (one port per connection)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, EmailMessage]] = []
        self.peers: set[Any] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append((rcpt, parsed))
            self.peers.add(session.peer)
        return "250 Message accepted for delivery"

    def count(self, suffix: str) -> int:
        with self.lock:
            return sum(1 for rcpt, _ in self.messages if rcpt.endswith(suffix))

    async def wait_for(self, suffix: str, count: int, timeout: float = 90.0) -> list[tuple[str, EmailMessage]]:
        await eventually(lambda: self.count(suffix) >= count, f"{count} messages to *{suffix}", timeout, interval=0.1)
        with self.lock:
            return [(r, m) for r, m in self.messages if r.endswith(suffix)]


def pdf(i: int) -> bytes:
    return b"%PDF-1.7\n" + f"invoice {i}".encode() * 200 + b"\n%%EOF"


def with_pdf(make_invoice: Callable[..., InvoiceIssued], document_server: Any, tenant: str, name: str, content: bytes) -> InvoiceIssued:
    """An invoice to ap@<tenant>.example whose PDF the document server serves at /<tenant>/<name>."""
    url = document_server.put(f"/{tenant}/{name}", "application/pdf", content)
    return make_invoice(buyer_account_id=account_id(tenant, "c-1"), buyer_email=f"ap@{tenant}.example", documents=[DocumentLink(kind="pdf", url=url)])


async def test_a_burst_of_invoice_emails_goes_out_once_each_with_its_pdf_over_kept_connections(
    settings: Settings,
    tenant: str,
    smtp_port: int,
    publish: Any,
    document_server: Any,
    kafka_bootstrap: str,
    make_invoice: Callable[..., InvoiceIssued],
    nothing_left_to_send: Any,
) -> None:
    burst = 30
    pool = settings.model_copy(update={"sender_concurrency": 4, "sender_batch_size": 5, "documents_concurrency": 2})
    with smtp_server(smtp_port, CountingMailbox()) as box:
        async with serve(build(pool)) as client:
            events = []
            for i in range(burst):
                url = document_server.put(f"/{tenant}/inv-{i}.pdf", "application/pdf", pdf(i))
                invoice = make_invoice(
                    buyer_account_id=account_id(tenant, f"c-{i}"),
                    buyer_email=f"c{i}@{tenant}.example",
                    number=f"NW-{i}",
                    documents=[DocumentLink(kind="pdf", url=url)],
                )
                events.append(new_event(invoice, source="/tests", tenant=tenant))
            for event in events:
                await publish(event)
            received = await box.wait_for(f"@{tenant}.example", burst)
            await nothing_left_to_send("delivery", tenant, "email")  # no wrongly repeated copy is still to go out
            rows = (await client.get("/v1/deliveries", headers={"X-Tenant-Id": tenant}, params={"limit": 100})).json()["items"]
            metrics = (await client.get("/metrics/")).text

    assert box.count(f"@{tenant}.example") == burst
    by_recipient = {rcpt: mail for rcpt, mail in received}
    assert sorted(by_recipient) == sorted(f"c{i}@{tenant}.example" for i in range(burst))
    for i in range(burst):
        mail = by_recipient[f"c{i}@{tenant}.example"]
        assert mail["Subject"] == f"Invoice NW-{i} from Northwind IT Ltd"
        assert attachments(mail) == [(f"inv-{i}.pdf", "application/pdf", pdf(i))]
    # Connections are kept open across messages: at most one per worker, however many messages.
    assert len(box.peers) <= 4
    fetched = [path for path, _ in document_server.requests]
    assert sorted(fetched) == sorted(f"/{tenant}/inv-{i}.pdf" for i in range(burst))
    assert len(rows) == burst and {(r["status"], r["attempts"]) for r in rows} == {("sent", 1)}
    delivered = await read_events(kafka_bootstrap, NOTIFICATIONS.name, until=lambda seen: len(seen) >= burst, match=lambda e: e.tenant == tenant)
    assert sorted(e.data.notification_id for e in delivered) == sorted(r["delivery_id"] for r in rows)
    assert 'billing_deliveries_in_flight{channel="email"}' in metrics
    assert "billing_email_send_seconds_bucket" in metrics


async def test_a_document_is_fetched_once_across_retries(
    settings: Settings,
    tenant: str,
    smtp_port: int,
    publish: Any,
    document_server: Any,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    invoice = with_pdf(make_invoice, document_server, tenant, "once.pdf", pdf(1))
    async with serve(build(settings)) as client:
        await publish(new_event(invoice, source="/tests", tenant=tenant))

        # No SMTP server yet: attempts fail after the document was fetched.
        async def retried_while_pending() -> bool:
            items = (await client.get("/v1/deliveries", headers={"X-Tenant-Id": tenant})).json()["items"]
            return bool(items and items[0]["attempts"] >= 2 and items[0]["status"] == "pending")

        await eventually(retried_while_pending, "the delivery attempted twice and still pending", 60, interval=0.1)
        with smtp_server(smtp_port, CountingMailbox()) as box:
            [(_, mail)] = await box.wait_for(f"@{tenant}.example", 1)
    assert attachments(mail) == [("once.pdf", "application/pdf", pdf(1))]
    assert [path for path, _ in document_server.requests] == [f"/{tenant}/once.pdf"]


async def test_a_throttled_document_fetch_waits_for_retry_after_and_the_email_goes_out_on_its_first_attempt(
    settings: Settings,
    tenant: str,
    smtp_port: int,
    publish: Any,
    document_server: Any,
    make_invoice: Callable[..., InvoiceIssued],
    nothing_left_to_send: Any,
) -> None:
    """invoicing answers 429 with Retry-After once the per-address limit on shared links is spent:
    notify waits that long and fetches again within the same attempt, rather than failing the
    attempt (which put the email back by the retry backoff, and a month close's mail trickled)."""
    path = f"/{tenant}/throttled.pdf"
    invoice = with_pdf(make_invoice, document_server, tenant, "throttled.pdf", pdf(3))
    document_server.throttled[path] = 2
    with smtp_server(smtp_port, CountingMailbox()) as box:
        async with serve(build(settings)) as client:
            await publish(new_event(invoice, source="/tests", tenant=tenant))
            [(_, mail)] = await box.wait_for(f"@{tenant}.example", 1)
            await nothing_left_to_send("delivery", tenant, "email")
            [row] = (await client.get("/v1/deliveries", headers={"X-Tenant-Id": tenant})).json()["items"]
            metrics = (await client.get("/metrics/")).text
    assert attachments(mail) == [("throttled.pdf", "application/pdf", pdf(3))]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert [p for p, _ in document_server.requests] == [path] * 3
    throttled = [line for line in metrics.splitlines() if line.startswith("billing_email_document_fetch_throttled_total ")]
    assert throttled and float(throttled[0].split()[1]) >= 2


async def test_concurrent_fetches_of_one_document_make_one_request(document_server: Any) -> None:
    url = document_server.put("/shared/one.pdf", "application/pdf", pdf(7))
    async with httpx.AsyncClient() as client:
        documents = Documents(client, base_url=None, max_bytes=1_000_000, concurrency=4, cache_bytes=1_000_000)
        contents = await asyncio.gather(*(documents.get(url, None) for _ in range(10)))
    assert contents == [pdf(7)] * 10
    assert [path for path, _ in document_server.requests] == ["/shared/one.pdf"]


async def test_emails_and_webhooks_share_one_claim_that_never_hands_a_row_out_twice(db: AsyncEngine, migrated: str) -> None:
    sessions = async_sessionmaker(db, expire_on_commit=False)
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    long_ago = datetime(2016, 1, 1, tzinfo=UTC)
    now = datetime(2016, 1, 1, 0, 1, tzinfo=UTC)
    async with sessions() as session, session.begin():
        for i in range(6):
            await session.execute(
                text(
                    "INSERT INTO notify.webhook_delivery (delivery_id, tenant, endpoint_id, event_id, event_type, account_id, seller_id,"
                    " payload, status, attempts, next_attempt_at, created_at) VALUES (:id, :t, 'gone', :e, 'billing.invoice.issued.v1',"
                    " 'a', 's', '{}', 'pending', 0, :at, :at)"
                ),
                {"id": f"{tenant}-{i}", "t": tenant, "e": str(uuid.uuid4()), "at": long_ago},
            )

    async def claim() -> list[str]:
        async with sessions() as session, session.begin():
            claimed = await LeasedQueue(webhook_repo.DELIVERY, WebhookDelivery, timedelta(minutes=5)).claim(session, now, 4)
            await asyncio.sleep(0.2)  # hold the row locks while the other claim runs
        return [d.delivery_id for d in claimed if d.tenant == tenant]

    first, second = await asyncio.gather(claim(), claim())
    assert len(first) + len(second) == 6 and not set(first) & set(second)
    async with sessions() as session:
        attempts = await session.scalar(select(func.sum(webhook_repo.DELIVERY.c.attempts)).where(webhook_repo.DELIVERY.c.tenant == tenant))
    assert attempts == 6
    async with sessions() as session, session.begin():
        await session.execute(delete(webhook_repo.DELIVERY).where(webhook_repo.DELIVERY.c.tenant == tenant))
    assert repo.DUE_STATUSES == ("pending", "sending")
