"""Unit: the delivery rules that need no server."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from notify.delivery.mime import compose
from notify.delivery.models import Delivery
from notify.delivery.sender import is_permanent
from notify.delivery.service import backoff, build_message, delivery_id, message_id

NOW = datetime(2026, 11, 2, 11, 0, tzinfo=UTC)


def delivery(**overrides: Any) -> Delivery:
    values: dict[str, Any] = {
        "delivery_id": delivery_id("event-1", "invoice_issued"),
        "tenant": "northwind-it",
        "channel": "email",
        "template": "invoice_issued",
        "account_id": "acc-1",
        "seller_id": "seller-1",
        "invoice_id": "inv-1",
        "cause_event_id": "event-1",
        "recipient": "ap@contoso.example",
        "from_name": "Northwind IT, Billing",
        "from_email": "invoices@northwind.example",
        "subject": "Invoice NW-1 from Northwind IT",
        "body_text": "Your invoice\n",
        "body_html": "<p>Your invoice</p>",
        "status": "sending",
        "attempts": 1,
        "created_at": NOW,
    }
    values.update(overrides)
    return Delivery(**values)


def test_delivery_id_is_fixed_by_cause_and_template() -> None:
    assert delivery_id("event-1", "invoice_issued") == delivery_id("event-1", "invoice_issued")
    assert delivery_id("event-1", "invoice_issued") != delivery_id("event-1", "payment_received")
    assert delivery_id("event-1", "invoice_issued") != delivery_id("event-2", "invoice_issued")


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 30, 3600) for n in (1, 2, 3)] == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    assert backoff(20, 30, 3600) == timedelta(seconds=3600)
    assert backoff(10_000, 30, 3600) == timedelta(seconds=3600)


def test_message_has_text_then_html_and_a_stable_message_id() -> None:
    d = delivery()
    message = build_message(d, NOW)
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert message["To"] == "ap@contoso.example"
    assert message["From"] == '"Northwind IT, Billing" <invoices@northwind.example>'
    assert message["Message-ID"] == f"<{d.delivery_id}@northwind.example>" == message_id(d)
    assert build_message(d, NOW + timedelta(hours=1))["Message-ID"] == message["Message-ID"]


def _tree(message: EmailMessage) -> list[object]:
    """What a mail client reads: headers (decoded), and each part's type, file name and content."""
    headers = [(k, str(v)) for k, v in message.items() if k not in ("Content-Type", "Content-Transfer-Encoding", "MIME-Version")]
    parts: list[object] = []
    for part in message.walk():
        if part.is_multipart():
            parts.append(part.get_content_type())
        else:
            parts.append((part.get_content_type(), part.get_filename(), part.get_content_disposition(), part.get_content()))
    return [headers, parts]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "from_name": "Société Générale — Facturation",
            "subject": "Facture n° FR-000123 de Société Générale, à régler avant le 16 novembre 2026 " * 2,
            "body_text": "Bonjour Zoë,\r\nvotre facture…\n\n" + "x" * 1200,
            "body_html": "<p>Ça va</p>\n<p>" + "y" * 1500 + "</p>\n",
        },
        {"recipient": "rené@exemple.fr", "from_email": "factures@société.example", "body_text": "no newline at the end"},
    ],
)
def test_composed_message_reads_back_as_the_built_one(overrides: dict[str, str]) -> None:
    d = delivery(**overrides)
    attachments = [("NW-000001.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 300), ("Überblick.xml", "application/xml", b"<a/>")]
    built = email.message_from_bytes(build_message(d, NOW, attachments).as_bytes(policy=email.policy.SMTPUTF8), policy=email.policy.default)
    data = compose(d, message_id(d), NOW, attachments)
    composed = email.message_from_bytes(data, policy=email.policy.default)
    assert _tree(composed) == _tree(built)
    assert all(len(line) <= 998 for line in data.split(b"\r\n")) and b"\n" not in data.replace(b"\r\n", b"")
    assert (d.recipient or "").isascii() != (not data.isascii())


def test_a_delivery_without_recipient_is_not_built() -> None:
    with pytest.raises(ValueError):
        build_message(delivery(recipient=None), NOW)


def test_only_5xx_about_recipient_or_content_is_permanent() -> None:
    assert is_permanent(aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "x@y")]))
    assert not is_permanent(aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(451, "try later", "x@y")]))
    assert is_permanent(aiosmtplib.SMTPDataError(554, "rejected"))
    assert not is_permanent(aiosmtplib.SMTPDataError(421, "busy"))
    assert not is_permanent(aiosmtplib.SMTPConnectError("refused"))
    assert not is_permanent(ConnectionRefusedError())
