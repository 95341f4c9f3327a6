from __future__ import annotations

import contextlib
import email
import email.policy
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from billing_events import CloudEvent, DocumentLink, InvoiceIssued, InvoiceLine, Money, Party, TaxBreakdown
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port
from billing_runtime.testing import eventually, service_under_test
from notify.config import Settings

# Tests run in importlib mode (no sys.path change); the shared helpers module sits beside this file
# under a name no other service's tests use.
sys.path.insert(0, str(Path(__file__).parent))

from notify_testkit import smtp_server  # noqa: E402


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd) received, parsed."""

    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        with self.lock:
            self.messages.append(Received(list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.messages if address in r.envelope_to]

    async def wait_for(self, address: str, count: int = 1, timeout: float = 60.0) -> list[EmailMessage]:
        return await eventually(lambda: self.to(address) if len(self.to(address)) >= count else None, f"{count} messages to {address}", timeout, interval=0.1)


# The harness's `migrated`, `app` and `client` (billing_runtime.testing) follow from it; `settings`
# is this suite's own (an SMTP port per test).
service = service_under_test("notify")


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def mailbox(smtp_port: int) -> Iterator[Mailbox]:
    with smtp_server(smtp_port, Mailbox()) as box:
        yield box


@pytest.fixture
def start_smtp() -> Callable[[int], contextlib.AbstractContextManager[Mailbox]]:
    """For tests that bring the SMTP server up late."""
    return lambda port: smtp_server(port, Mailbox())


@pytest.fixture
def settings(migrated: str, kafka_bootstrap: str, smtp_port: int) -> Settings:
    return Settings(
        database_url=migrated,
        kafka_bootstrap_servers=kafka_bootstrap,
        smtp_port=smtp_port,
        smtp_timeout=5,
        retry_backoff_seconds=0.3,
        retry_backoff_max_seconds=1,
        sender_poll_ms=100,
        # The test receivers listen on 127.0.0.1 over http: allowed here only (notify.webhook.destination).
        webhook_allowed_destinations=["127.0.0.1/32", "localhost"],
    )


@pytest.fixture
async def db(migrated: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated, pool_size=2)
    yield engine
    await engine.dispose()


WaitApplied = Callable[[str], Awaitable[str]]


def in_flight(channel: str) -> float:
    """Deliveries of `channel` ("email", "webhook") the running sender has claimed and not yet settled."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("billing_deliveries_in_flight", {"channel": channel}) or 0.0


NothingLeft = Callable[[str, str, str], Awaitable[None]]


@pytest.fixture
def nothing_left_to_send(db: AsyncEngine) -> NothingLeft:
    """`await nothing_left_to_send(table, tenant, channel)`: until every delivery row of the tenant
    in `notify.<table>` is settled (none pending or sending, the only states a sender claims) and
    the sender holds none in hand. From then on no copy can go out that has not already, so a
    count of what was received is final without waiting for a wrong one."""

    async def wait(table: str, tenant: str, channel: str) -> None:
        async def settled() -> bool:
            async with db.connect() as conn:
                due = await conn.scalar(text(f"SELECT count(*) FROM notify.{table} WHERE tenant = :t AND status IN ('pending', 'sending')"), {"t": tenant})
            return due == 0 and in_flight(channel) == 0

        await eventually(settled, f"{tenant}'s {channel} deliveries settled")

    return wait


@pytest.fixture
def applied(db: AsyncEngine) -> WaitApplied:
    """Wait until notify's inbox has recorded an event id; gives its status (applied or
    dead_lettered). Events on different topics are not ordered, so tests that need one applied
    before the next is published wait here."""

    async def status(event_id: str) -> str | None:
        async with db.connect() as conn:
            found = await conn.scalar(text("SELECT status FROM notify.inbox WHERE event_id = :id"), {"id": event_id})
        return None if found is None else str(found)

    async def wait(event_id: str, timeout: float = 60.0) -> str:
        return await eventually(lambda: status(event_id), f"event {event_id} in notify's inbox", timeout, interval=0.1)

    return wait


PublishApplied = Callable[[CloudEvent[Any]], Awaitable[None]]


@pytest.fixture
def publish_applied(publish: Callable[[CloudEvent[Any]], Awaitable[None]], applied: WaitApplied) -> PublishApplied:
    """`await publish_applied(event)`: published, and applied by notify's inbox (not dead-lettered)
    before the test goes on."""

    async def publish_and_wait(event: CloudEvent[Any]) -> None:
        await publish(event)
        assert await applied(event.id) == "applied"

    return publish_and_wait


def invoice_data(
    *,
    buyer_account_id: str,
    number: str = "NW-2026-000001",
    buyer_name: str = "Contoso Dental",
    buyer_email: str | None = None,
    seller_name: str = "Northwind IT Ltd",
    invoice_id: str | None = None,
    documents: list[DocumentLink] | None = None,
) -> InvoiceIssued:
    def usd(amount: str) -> Money:
        return Money.of(amount, "USD")

    def october(line_id: str, product_code: str, description: str, quantity: str, unit_price: str, net: str) -> InvoiceLine:
        return InvoiceLine(
            line_id=line_id,
            product_code=product_code,
            description=description,
            service_period_start=date(2026, 10, 1),
            service_period_end=date(2026, 10, 31),
            quantity=Decimal(quantity),
            unit_price=usd(unit_price),
            net=usd(net),
            tax_rate=Decimal("0"),
            tax_category="O",
        )

    lines = [october("l-1", "USR-SUP", "User support", "15", "35.00", "525.00"), october("l-2", "EML-HST", "Hosted email", "11", "6.75", "74.25")]
    return InvoiceIssued(
        invoice_id=invoice_id or str(uuid.uuid4()),
        number=number,
        seller=Party(account_id="seller-account", name=seller_name, country="US"),
        buyer=Party(account_id=buyer_account_id, name=buyer_name, country="US", email=buyer_email),
        issued_on=date(2026, 11, 2),
        due_on=date(2026, 12, 5),
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        currency="USD",
        lines=lines,
        tax_breakdown=[TaxBreakdown(tax_category="O", rate=Decimal("0"), taxable=usd("599.25"), tax=usd("0.00"))],
        net_total=usd("599.25"),
        tax_total=usd("0.00"),
        total=usd("599.25"),
        documents=documents or [],
    )


@pytest.fixture
def make_invoice() -> Callable[..., InvoiceIssued]:
    return invoice_data


@dataclass
class DocumentServer:
    """A real local HTTP server that serves documents, as invoicing's document store would."""

    base_url: str
    documents: dict[str, tuple[str, bytes]]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # path -> how many more requests for it are answered 429 with `Retry-After: 1` (as invoicing's
    # per-address limit on shared links answers).
    throttled: dict[str, int] = field(default_factory=dict)

    def put(self, path: str, content_type: str, content: bytes) -> str:
        self.documents[path] = (content_type, content)
        return f"{self.base_url}{path}"


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the stdlib's access log off the test output."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server(port: int, handler: type[BaseHTTPRequestHandler]) -> Iterator[None]:
    """A real local HTTP server on `port`, serving with `handler` from threads of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def document_server() -> Iterator[DocumentServer]:
    port = free_port()
    served = DocumentServer(f"http://127.0.0.1:{port}", {})

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            served.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            if served.throttled.get(self.path, 0) > 0:
                served.throttled[self.path] -= 1
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            found = served.documents.get(self.path)
            if found is None:
                self.send_error(404)
                return
            content_type, content = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    with http_server(port, Handler):
        yield served


@dataclass
class WebhookRequest:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real local HTTP server standing in for a partner's webhook endpoint. It answers
    `fail_first` requests with a 500, then 200."""

    url: str
    requests: list[WebhookRequest] = field(default_factory=list)
    fail_first: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[WebhookRequest]:
        with self.lock:
            return list(self.requests)

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[WebhookRequest]:
        return await eventually(lambda: self.received() if len(self.received()) >= count else None, f"{count} webhook requests", timeout, interval=0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    got = Receiver(f"http://127.0.0.1:{port}/hooks")

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with got.lock:
                got.requests.append(WebhookRequest({k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(got.requests) <= got.fail_first
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with http_server(port, Handler):
        yield got
