"""The events, brands and render contexts several of notify's test modules build alike."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from billing_events import CloudEvent, Money, PaymentSucceeded, account_id, new_event
from billing_events.testing import make_customer
from notify.brand.service import EffectiveBrand

# The seller's brand with everything a mail can show: support contact, portal and bank account.
NORTHWIND = EffectiveBrand(
    sender_name="Northwind IT",
    sender_email="invoices@northwind.example",
    logo_url=None,
    primary_color="#AA3300",
    footer="Northwind IT Ltd · 100 Main St, Cedar Rapids, IA 52401",
    support_email="billing@northwind.example",
    support_phone="+1 319 555 0100",
    portal_url="https://portal.northwind.example/p/northwind/",
    bank_account_name="Northwind IT Ltd",
    iban="DE89370400440532013000",
    bic="COBADEFFXXX",
)
# A brand with none of that: no support contact, no portal, no bank account.
PLAIN = EffectiveBrand("Northwind IT", "invoices@northwind.example", None, "#AA3300", None)


H = TypeVar("H")


@contextlib.contextmanager
def smtp_server(port: int, handler: H) -> Iterator[H]:
    """A real SMTP server (aiosmtpd) on `port`, handing each message to `handler.handle_DATA`."""
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def attachments(mail: EmailMessage) -> list[tuple[str | None, str, Any]]:
    """(file name, content type, content) of each attachment of a received mail."""
    return [(part.get_filename(), part.get_content_type(), part.get_content()) for part in mail.iter_attachments()]


def customer(tenant: str, external_id: str, email: str, *, name: str = "Contoso Dental", revision: int = 1) -> CloudEvent[Any]:
    """The customer's billing contact `email` as usage-ingest announces it."""
    data = make_customer(tenant, external_id, name=name, billing_email=email, country="US", currency="USD", revision=revision)
    return new_event(data, source="/tests", tenant=tenant)


def paid(tenant: str, invoice_id: str, amount: str = "599.25") -> CloudEvent[Any]:
    """Customer c-1's card payment of `invoice_id`, as payments announces it."""
    data = PaymentSucceeded(
        payment_id=str(uuid.uuid4()),
        invoice_id=invoice_id,
        seller_id=tenant,
        account_id=account_id(tenant, "c-1"),
        amount=Money.of(amount, "USD"),
        method="card",
        provider="stripe",
        paid_on=date(2026, 12, 1),
    )
    return new_event(data, source="/tests", tenant=tenant)


def comparison_report(period_start: date, period_end: date) -> SimpleNamespace:
    """What the comparison report mail reads of ComparisonReportReady."""
    return SimpleNamespace(
        period_start=period_start,
        period_end=period_end,
        this_period_total=Money.of("1516.25", "USD"),
        last_period_total=Money.of("1481.25", "USD"),
        difference=Money.of("35.00", "USD"),
        lines_added=1,
        lines_removed=0,
        lines_changed=2,
    )


def project_work() -> SimpleNamespace:
    """What the project work statement mail reads of ProjectWorkStatementIssued (seed 001)."""
    return SimpleNamespace(
        number="TSD-PW-000001",
        seller=SimpleNamespace(name="Tailspin Distribution Inc."),
        end_customer_name="Contoso Dental",
        end_customer_id="c",
        description="Project work: server build",
        product_code="PROJ-TM",
        performed_on=date(2026, 10, 14),
        quantity=Decimal("2.5"),
        unit_price=Money.of("125.00", "USD"),
        amount=Money.of("312.50", "USD"),
        billed_with_period_start=date(2026, 10, 1),
        billed_with_period_end=date(2026, 10, 31),
    )
