"""The MIME message of a delivery, written straight to the bytes SMTP DATA carries.

The same message `service.build_message` describes with `email.message.EmailMessage` (text, its
HTML alternative, then the attachments; the same headers), without the email package's header
registry, content manager and generator, which took about a third of notify's CPU per email.
Everything is 7-bit: a body that is ASCII with lines of at most 998 characters goes as is, any
other in base64 (so no server needs 8BITMIME); attachments in base64, 76 characters a line;
header words that are not ASCII are RFC 2047 (RFC 2231 for file names). Only the addresses go as
UTF-8, with SMTPUTF8, when they are not ASCII. A test checks that the email package reads back
the same message as `build_message` gives.
"""

from __future__ import annotations

import base64
import email.utils
import re
import secrets
from datetime import datetime
from email.header import Header

from notify.delivery.models import Delivery

CRLF = b"\r\n"
LINE_END = re.compile(r"\r\n|\r|\n")


def _header(name: str, value: str) -> bytes:
    if value.isascii() and len(name) + len(value) + 2 <= 78 and "\n" not in value and "\r" not in value:
        return f"{name}: {value}".encode() + CRLF
    encoded = Header(value, "us-ascii" if value.isascii() else "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}".encode() + CRLF


def _base64(content: bytes) -> bytes:
    return base64.encodebytes(content).replace(b"\n", CRLF)


def _text_part(subtype: str, text: str) -> bytes:
    # As the email package: line ends made CRLF, and the body ends with one.
    lines = LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    if text.isascii() and all(len(line) <= 998 for line in lines):
        body, cte = CRLF.join(line.encode() for line in lines) + CRLF, "7bit"
    else:
        body, cte = _base64(("\r\n".join(lines) + "\r\n").encode()), "base64"
    return f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'.encode() + body


def _attachment_part(filename: str, content_type: str, content: bytes) -> bytes:
    maintype, _, subtype = content_type.partition("/")
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        disposition = f'attachment; filename="{filename}"'
    else:
        disposition = f"attachment; filename*={email.utils.encode_rfc2231(filename, 'utf-8')}"
    head = f"Content-Type: {maintype}/{subtype or 'octet-stream'}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: {disposition}\r\n\r\n"
    return head.encode() + _base64(content)


def _from(name: str, address: str) -> bytes:
    if address.isascii():
        return _header("From", email.utils.formataddr((name, address), charset="utf-8"))
    # An address that is not ASCII goes as UTF-8 (SMTPUTF8); the name is still RFC 2047 when it must be.
    placeholder = "x@x.invalid"
    shown = email.utils.formataddr((name, placeholder), charset="utf-8").removesuffix(f"<{placeholder}>").rstrip() if name else ""
    return (f"From: {shown} <{address}>" if shown else f"From: {address}").encode() + CRLF


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    boundary = f"==============={secrets.token_hex(16)}=="
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for part in parts:
        # A part ends with its own line end; the one before the next boundary belongs to the boundary.
        out.append(f"--{boundary}\r\n".encode())
        out.append(part)
        out.append(CRLF)
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def compose(delivery: Delivery, message_id: str, now: datetime, attachments: list[tuple[str, str, bytes]] | None = None) -> bytes:
    """The message as SMTP DATA carries it (CRLF line ends, before dot-stuffing)."""
    if delivery.recipient is None:
        raise ValueError("a delivery without a recipient cannot be sent")
    if any(c in delivery.recipient + delivery.from_email for c in "\r\n"):
        raise ValueError("an address cannot span lines")
    headers = b"".join(
        (
            _from(delivery.from_name, delivery.from_email),
            b"To: " + delivery.recipient.encode() + CRLF,
            _header("Subject", delivery.subject),
            _header("Date", email.utils.format_datetime(now)),
            _header("Message-ID", message_id),
            # Tells auto-responders not to answer a machine.
            b"Auto-Submitted: auto-generated\r\n",
            b"MIME-Version: 1.0\r\n",
        )
    )
    body = _multipart("alternative", [_text_part("plain", delivery.body_text), _text_part("html", delivery.body_html)])
    if attachments:
        body = _multipart("mixed", [body, *(_attachment_part(name, content_type, content) for name, content_type, content in attachments)])
    return headers + body
