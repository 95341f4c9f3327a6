"""notify end to end: real Tansu, real PostgreSQL, a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from notify_testkit import customer, paid

from billing_events import (
    CloudEvent,
    InvoiceIssued,
    account_id,
    new_event,
)
from billing_events.topics import INVOICES, NOTIFICATIONS
from billing_runtime.testing import dead_lettered, eventually, read_events, tenant_headers
from notify.delivery.service import delivery_id

# Events are handed to notify in process (the `publish` fixture delivers them through the runtime's
# dispatch), so it is served without a broker consumer (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

Publish = Callable[[CloudEvent[Any]], Any]


def issued(tenant: str, invoice: InvoiceIssued) -> CloudEvent[Any]:
    return new_event(invoice, source="/tests", tenant=tenant, subject=invoice.invoice_id)


async def deliveries(client: httpx.AsyncClient, tenant: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/deliveries", headers=tenant_headers(tenant), params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def wait_delivery(client: httpx.AsyncClient, tenant: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0) -> list[dict[str, Any]]:
    async def matched() -> tuple[list[dict[str, Any]]] | None:
        items = await deliveries(client, tenant)
        return (items,) if until(items) else None

    [items] = await eventually(matched, "the deliveries to match", timeout, interval=0.1)
    return items


async def test_invoice_email_reaches_the_billing_contact_in_the_sellers_brand(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Publish,
    publish_applied: Publish,
    make_invoice: Callable[..., InvoiceIssued],
    kafka_bootstrap: str,
) -> None:
    brand = {
        "sender_name": "Northwind IT",
        "sender_email": "invoices@northwind.example",
        "primary_color": "#AA3300",
        "logo_url": None,
        "footer": "Northwind IT Ltd",
    }
    assert (await client.put("/v1/brand", headers=tenant_headers(tenant), json=brand)).status_code == 200
    contact_email = f"ap-{tenant}@contoso.example"
    await publish_applied(customer(tenant, "c-1", contact_email, name="<script>alert(1)</script> Dental"))
    invoice = make_invoice(buyer_account_id=account_id(tenant, "c-1"), buyer_email=f"old-{tenant}@contoso.example")
    event = issued(tenant, invoice)
    await publish(event)

    [mail] = await mailbox.wait_for(contact_email)
    assert mail["Subject"] == f"Invoice {invoice.number} from Northwind IT Ltd"
    assert mail["From"] == "Northwind IT <invoices@northwind.example>"
    assert mail["Message-ID"] == f"<{delivery_id(event.id, 'invoice_issued')}@northwind.example>"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert invoice.number in body and "5 December 2026" in body and "599.25 USD" in body and "525.00 USD" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Dental" in html and "<script>" not in html
    assert "#AA3300" in html
    assert mailbox.to(f"old-{tenant}@contoso.example") == []

    [row] = await wait_delivery(client, tenant, lambda items: bool(items) and items[0]["status"] == "sent")
    assert row["recipient"] == contact_email and row["attempts"] == 1 and row["template"] == "invoice_issued"
    assert row["cause_event_id"] == event.id and row["sent_at"] is not None

    delivered = await read_events(kafka_bootstrap, NOTIFICATIONS.name, until=lambda seen: len(seen) >= 1, match=lambda e: e.tenant == tenant)
    assert delivered[0].data.cause_event_id == event.id
    assert delivered[0].data.notification_id == row["delivery_id"]
    assert delivered[0].data.recipient == contact_email
    assert delivered[0].data.template == "invoice_issued"
    metrics = (await client.get("/metrics/")).text
    # The series exists from start-up at 0 (dashboards say 0): the email sent counts 1 or more.
    sent = re.search(r'^billing_emails_total\{outcome="sent",template="invoice_issued"\} (\S+)$', metrics, re.MULTILINE)
    assert sent is not None and float(sent.group(1)) >= 1


async def test_same_invoice_event_twice_sends_one_email(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Publish,
    make_invoice: Callable[..., InvoiceIssued],
    nothing_left_to_send: Any,
) -> None:
    buyer = account_id(tenant, "c-1")
    recipient = f"ap-{tenant}@example.com"
    event = issued(tenant, make_invoice(buyer_account_id=buyer, buyer_email=recipient, number="NW-1"))
    await publish(event)
    await publish(event)
    # A later invoice to the same buyer rides the same partition, so once its email is out the
    # duplicate before it has surely been consumed.
    later = issued(tenant, make_invoice(buyer_account_id=buyer, buyer_email=recipient, number="NW-2"))
    await publish(later)
    mails = await mailbox.wait_for(recipient, count=2)
    await nothing_left_to_send("delivery", tenant, "email")  # no wrongly queued third copy is still to go out
    assert sorted(m["Subject"] for m in mailbox.to(recipient)) == [
        "Invoice NW-1 from Northwind IT Ltd",
        "Invoice NW-2 from Northwind IT Ltd",
    ]
    assert len(mails) == 2
    assert len(await deliveries(client, tenant, template="invoice_issued")) == 2


async def test_no_contact_falls_back_to_invoice_email_and_no_email_is_logged(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Publish,
    applied: Any,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    fallback = f"buyer-{tenant}@example.com"
    with_email = issued(tenant, make_invoice(buyer_account_id=account_id(tenant, "c-1"), buyer_email=fallback, number="NW-1"))
    without = issued(tenant, make_invoice(buyer_account_id=account_id(tenant, "c-2"), buyer_email=None, number="NW-2"))
    await publish(with_email)
    await publish(without)
    [mail] = await mailbox.wait_for(fallback)
    assert mail["Subject"] == "Invoice NW-1 from Northwind IT Ltd"
    # Without a brand the seller's own name heads the From line.
    assert mail["From"] == "Northwind IT Ltd <billing@localhost>"
    assert await applied(without.id) == "applied"
    [row] = await deliveries(client, tenant, status="no_recipient")
    assert row["recipient"] is None and row["account_id"] == account_id(tenant, "c-2") and row["attempts"] == 0


async def test_latest_contact_revision_wins(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Publish,
    publish_applied: Publish,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    newer = customer(tenant, "c-1", f"new-{tenant}@example.com", revision=2)
    older = customer(tenant, "c-1", f"old-{tenant}@example.com", revision=1)
    await publish(newer)
    await publish_applied(older)  # a replayed older revision must not win
    await publish(issued(tenant, make_invoice(buyer_account_id=account_id(tenant, "c-1"))))
    await mailbox.wait_for(f"new-{tenant}@example.com")
    assert mailbox.to(f"old-{tenant}@example.com") == []


async def test_smtp_down_at_first_is_retried_and_sent_once_up(
    client: httpx.AsyncClient,
    tenant: str,
    smtp_port: int,
    start_smtp: Any,
    publish: Publish,
    make_invoice: Callable[..., InvoiceIssued],
    nothing_left_to_send: Any,
) -> None:
    recipient = f"ap-{tenant}@example.com"
    await publish(issued(tenant, make_invoice(buyer_account_id=account_id(tenant, "c-1"), buyer_email=recipient)))
    # Two attempts failed and settled (a row still `sending` may be an attempt that finds the server up).
    [row] = await wait_delivery(client, tenant, lambda items: bool(items) and items[0]["attempts"] >= 2 and items[0]["status"] == "pending")
    assert row["sent_at"] is None
    with start_smtp(smtp_port) as mailbox:
        [mail] = await mailbox.wait_for(recipient)
        [row] = await wait_delivery(client, tenant, lambda items: items[0]["status"] == "sent")
        await nothing_left_to_send("delivery", tenant, "email")  # no earlier attempt still under way
        assert len(mailbox.to(recipient)) == 1
    assert mail["Subject"] == "Invoice NW-2026-000001 from Northwind IT Ltd"
    assert row["attempts"] >= 3 and row["last_error"] is None


async def test_payment_received_names_the_invoice_number_or_its_id(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Publish,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    recipient = f"ap-{tenant}@example.com"
    await publish(customer(tenant, "c-1", recipient))
    invoice = make_invoice(buyer_account_id=account_id(tenant, "c-1"), buyer_email=recipient, number="NW-77")
    await publish(issued(tenant, invoice))
    await mailbox.wait_for(recipient)
    await publish(paid(tenant, invoice.invoice_id))
    unknown = str(uuid.uuid4())
    await publish(paid(tenant, unknown))
    mails = await mailbox.wait_for(recipient, count=3)
    subjects = {m["Subject"] for m in mails}
    assert "Payment received for invoice NW-77" in subjects
    assert f"Payment received for invoice {unknown}" in subjects
    confirmation = next(m for m in mails if m["Subject"] == "Payment received for invoice NW-77")
    assert "599.25 USD" in confirmation.get_body(("plain",)).get_content()


@pytest.mark.consume(True)  # a poison message on the broker
async def test_poison_event_is_dead_lettered_and_the_next_applied(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Publish,
    producer: AIOKafkaProducer,
    make_invoice: Callable[..., InvoiceIssued],
    kafka_bootstrap: str,
) -> None:
    buyer = account_id(tenant, "c-1")
    recipient = f"ap-{tenant}@example.com"
    good = issued(tenant, make_invoice(buyer_account_id=buyer, buyer_email=recipient))
    poison_id = str(uuid.uuid4())
    poison_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", poison_id.encode()),
        ("ce_source", b"/tests"),
        ("ce_type", InvoiceIssued.event_type.encode()),
        ("ce_time", b"2026-11-02T11:00:00+00:00"),
        ("ce_tenant", tenant.encode()),
        ("content-type", b"application/json"),
    ]
    await producer.send_and_wait(INVOICES.name, value=b'{"invoice_id": "x", "total": 12.5}', key=buyer.encode(), headers=poison_headers)
    await publish(good)
    [mail] = await mailbox.wait_for(recipient)
    assert mail["Subject"] == "Invoice NW-2026-000001 from Northwind IT Ltd"
    dead = await dead_lettered(kafka_bootstrap, poison_id, service="notify")
    assert "invalid" in dead["dlq_error"]
    assert len(await deliveries(client, tenant)) == 1
