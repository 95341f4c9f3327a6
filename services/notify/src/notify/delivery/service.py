"""The delivery rules: deciding what to send (in the consumer's transaction), and settling each
attempt (in a short transaction of its own, after the SMTP conversation is over).

Deciding and sending are apart so that no database transaction is ever held open over SMTP,
and so that a redelivered event adds nothing: the delivery id is derived from the cause event
and the template, and a second insert of the same id is a no-op.
"""

from __future__ import annotations

import email.utils
import mimetypes
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    AccountReinstated,
    AccountSuspended,
    CloudEvent,
    ComparisonReportReady,
    DocumentLink,
    DunningStepReached,
    InvoiceIssued,
    Money,
    NotificationDelivered,
    PaymentFailed,
    PaymentSucceeded,
    PortalSignInLinkIssued,
    ProjectWorkStatementIssued,
    derived_event_id,
)
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from notify.brand.models import Brand, PaymentAccount
from notify.brand.service import EffectiveBrand, effective, effective_brand
from notify.contact import repository as contacts
from notify.contact.models import Contact
from notify.delivery import repository as repo
from notify.delivery.instructions import HowToPay, how_to_pay, is_public
from notify.delivery.models import Delivery, KnownInvoice
from notify.templates.render import RenderedEmail, render

tracer = trace.get_tracer(__name__)

EMAILS = Counter("billing_emails_total", "Emails by template and outcome (sent, retry, failed, no_recipient)", ["template", "outcome"])

INVOICE_ISSUED = "invoice_issued"
PAYMENT_RECEIVED = "payment_received"
PAYMENT_FAILED = "payment_failed"
REMINDER = "reminder"
FINAL_NOTICE = "final_notice"
SUSPENSION = "suspension"
REINSTATEMENT = "reinstatement"
COMPARISON_REPORT = "comparison_report"
PROJECT_WORK_STATEMENT = "project_work_statement"
PORTAL_SIGN_IN = "portal_sign_in"
TEMPLATES = (
    INVOICE_ISSUED,
    PAYMENT_RECEIVED,
    PAYMENT_FAILED,
    REMINDER,
    FINAL_NOTICE,
    SUSPENSION,
    REINSTATEMENT,
    COMPARISON_REPORT,
    PROJECT_WORK_STATEMENT,
    PORTAL_SIGN_IN,
)
start_at_zero(EMAILS, TEMPLATES, ("sent", "retry", "failed", "no_recipient"))
STEP_TEMPLATES = {"remind": REMINDER, "final_notice": FINAL_NOTICE}

# Fixed: changing it would give every queued message a new id (and a second copy).
_NAMESPACE = uuid.UUID("0b3c2a52-9d8e-5f61-8c1e-6a7d4f2e9b10")


def delivery_id(cause_event_id: str, template: str, channel: str = "email") -> str:
    """The same cause and template always name the same delivery."""
    return str(uuid.uuid5(_NAMESPACE, f"delivery:{channel}:{template}:{cause_event_id}"))


def message_id(delivery: Delivery) -> str:
    """A Message-ID fixed by the delivery, so a resend after a crash between the SMTP hand-over
    and our commit is recognisable downstream as the same message."""
    domain = delivery.from_email.rpartition("@")[2] or "notify.invalid"
    return f"<{delivery.delivery_id}@{domain}>"


def backoff(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: base, 2×base, 4×base … capped."""
    exponent = max(attempts - 1, 0)
    return timedelta(seconds=min(base_seconds * 2 ** min(exponent, 32), max_seconds))


def _recipient_or_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


async def _record(session: AsyncSession, event: CloudEvent[Any], **what: Any) -> Delivery:
    delivery = _delivery(event, **what)
    inserted = await repo.insert_delivery(session, delivery)
    if inserted and delivery.recipient is None:
        EMAILS.labels(delivery.template, "no_recipient").inc()
    return delivery


def _delivery(
    event: CloudEvent[Any],
    *,
    template: str,
    account_id: str,
    seller_id: str,
    invoice_id: str | None,
    recipient: str | None,
    brand: EffectiveBrand,
    rendered: RenderedEmail,
    now: datetime,
    attachments: list[dict[str, str | bool]] | None = None,
) -> Delivery:
    return Delivery(
        delivery_id=delivery_id(event.id, template),
        tenant=event.tenant,
        channel="email",
        template=template,
        account_id=account_id,
        seller_id=seller_id,
        invoice_id=invoice_id,
        cause_event_id=event.id,
        recipient=recipient,
        from_name=brand.sender_name,
        from_email=brand.sender_email,
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
        attachments=attachments or [],
        status="pending" if recipient else "no_recipient",
        attempts=0,
        next_attempt_at=now if recipient else None,
        created_at=now,
    )


def attachment(document: DocumentLink, fallback_name: str) -> dict[str, str | bool]:
    """What the sender fetches for a document: its shared link when it has one (no credential
    needed), else its URL at invoicing (fetched as the seller); a file name (the URL's last path
    segment, else `fallback_name`) and a content type (from the name's extension)."""
    url = document.shared_url or document.url
    name = PurePosixPath(urlsplit(url).path).name or fallback_name
    if "." not in name:
        name = fallback_name
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return {"url": url, "filename": name, "content_type": content_type, "shared": document.shared_url is not None}


def _known_invoice(event: CloudEvent[Any]) -> KnownInvoice:
    invoice: InvoiceIssued = event.data
    return KnownInvoice(
        invoice_id=invoice.invoice_id,
        tenant=event.tenant,
        number=invoice.number,
        seller_id=invoice.seller.account_id,
        seller_name=invoice.seller.name,
        buyer_account_id=invoice.buyer.account_id,
        buyer_name=invoice.buyer.name,
        buyer_email=_recipient_or_none(invoice.buyer.email),
        total=invoice.total.amount,
        currency=invoice.total.currency,
        issued_on=invoice.issued_on,
        due_on=invoice.due_on,
        document_url=next((d.shared_url for d in invoice.documents if d.kind == "pdf" and is_public(d.shared_url)), None),
    )


def _invoice_deliveries(
    event: CloudEvent[Any],
    contact: Contact | None,
    stored_brand: Brand | None,
    *,
    now: datetime,
    default_sender_email: str,
    account: PaymentAccount | None = None,
) -> list[Delivery]:
    """The invoice email (its PDF attached): to the buyer's billing contact (else the invoice's
    buyer email), in the seller's brand."""
    invoice: InvoiceIssued = event.data
    recipient = _recipient_or_none(contact.billing_email if contact else None) or _recipient_or_none(invoice.buyer.email)
    brand = effective(stored_brand, event.tenant, seller_name=invoice.seller.name, default_sender_email=default_sender_email, account=account)
    buyer_name = contact.name if contact else invoice.buyer.name
    pdfs = [attachment(d, f"{invoice.number}.pdf") for d in invoice.documents if d.kind == "pdf"]
    pay = how_to_pay(
        brand,
        amount=invoice.total,
        due_on=invoice.due_on,
        invoice_number=invoice.number,
        document_url=next((d.shared_url for d in invoice.documents if d.kind == "pdf"), None),
    )
    rendered = render(INVOICE_ISSUED, {"invoice": invoice, "brand": brand, "buyer_name": buyer_name, "pay": pay})
    common: dict[str, Any] = {
        "account_id": invoice.buyer.account_id,
        "seller_id": invoice.seller.account_id,
        "invoice_id": invoice.invoice_id,
        "recipient": recipient,
        "brand": brand,
        "now": now,
    }
    deliveries = [_delivery(event, template=INVOICE_ISSUED, rendered=rendered, attachments=pdfs, **common)]
    return deliveries


async def _insert(session: AsyncSession, deliveries: list[Delivery]) -> None:
    inserted = await repo.insert_deliveries(session, deliveries)
    for d in deliveries:
        if d.delivery_id in inserted and d.recipient is None:
            EMAILS.labels(d.template, "no_recipient").inc()


async def record_invoice_issued(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    """Queue the invoice email (its PDF attached) to the buyer's billing contact (else the
    invoice's buyer email) in the seller's brand, and remember the invoice for later
    notifications about it."""
    invoice: InvoiceIssued = event.data
    span_attributes = {"notify.template": INVOICE_ISSUED, "billing.invoice_id": invoice.invoice_id}
    with tracer.start_as_current_span("notify decide", attributes=span_attributes):
        contact, stored_brand, account = await repo.remember_invoice_and_look_up(session, _known_invoice(event))
        deliveries = _invoice_deliveries(event, contact, stored_brand, now=now, default_sender_email=default_sender_email, account=account)
        await _insert(session, deliveries)
        return deliveries[0]


async def record_invoices_issued(session: AsyncSession, events: list[CloudEvent[Any]], *, now: datetime, default_sender_email: str) -> list[Delivery]:
    """`record_invoice_issued` for a batch of InvoiceIssued (a month close), in four statements
    whatever its size: remember the invoices, read their contacts, brands and bank accounts, insert the deliveries."""
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": INVOICE_ISSUED, "notify.events": len(events)}):
        contacts_by_account, brands_by_tenant, accounts = await repo.remember_invoices_and_look_up(session, [_known_invoice(e) for e in events])
        deliveries = [
            d
            for e in events
            for d in _invoice_deliveries(
                e,
                contacts_by_account.get(e.data.buyer.account_id),
                brands_by_tenant.get(e.tenant),
                now=now,
                default_sender_email=default_sender_email,
                account=accounts.get(e.tenant),
            )
        ]
        await _insert(session, deliveries)
        return deliveries


@dataclass(frozen=True)
class Audience:
    """Whom a message about an account goes to, as whom, and the invoice it is about if known."""

    account_id: str
    invoice_id: str | None
    recipient: str | None
    buyer_name: str
    brand: EffectiveBrand
    invoice: KnownInvoice | None


async def audience(session: AsyncSession, tenant: str, account_id: str, invoice_id: str | None, default_sender_email: str) -> Audience:
    """The billing contact (else the buyer email of the invoice, or of the account's latest
    invoice), the buyer's name, and the seller's brand."""
    invoice = await repo.known_invoice(session, tenant, invoice_id) if invoice_id else None
    latest = invoice or await repo.latest_invoice_of_account(session, tenant, account_id)
    contact = await contacts.get(session, tenant, account_id)
    recipient = _recipient_or_none(contact.billing_email if contact else None) or _recipient_or_none(latest.buyer_email if latest else None)
    buyer_name = contact.name if contact else (latest.buyer_name if latest else "customer")
    brand = await effective_brand(session, tenant, seller_name=latest.seller_name if latest else None, default_sender_email=default_sender_email)
    return Audience(account_id, invoice_id, recipient, buyer_name, brand, invoice)


def invoice_how_to_pay(who: Audience, amount: Money | None) -> HowToPay:
    """Payment instructions for the invoice a message is about, as far as notify knows it: its
    number (for the RF reference), due date and PDF link when it saw the invoice issued."""
    known = who.invoice
    return how_to_pay(
        who.brand,
        amount=amount,
        due_on=known.due_on if known else None,
        invoice_number=known.number if known else None,
        document_url=known.document_url if known else None,
    )


def _invoice_context(who: Audience, invoice_id: str, amount: Money | None) -> dict[str, Any]:
    """The invoice a reminder is about: its number (its id when notify has not seen it issued),
    its due date, and how to pay `amount`."""
    return {
        "invoice_number": who.invoice.number if who.invoice else invoice_id,
        "due_on": who.invoice.due_on if who.invoice else None,
        "pay": invoice_how_to_pay(who, amount),
    }


async def _record_to(
    session: AsyncSession,
    event: CloudEvent[Any],
    who: Audience,
    template: str,
    *,
    seller_id: str,
    context: dict[str, Any],
    now: datetime,
    attachments: list[dict[str, str | bool]] | None = None,
) -> Delivery:
    """Render `template` for the audience (its brand and buyer's name in the context unless
    `context` names them) and record the delivery about its account and invoice to its recipient."""
    return await _record(
        session,
        event,
        template=template,
        account_id=who.account_id,
        seller_id=seller_id,
        invoice_id=who.invoice_id,
        recipient=who.recipient,
        brand=who.brand,
        rendered=render(template, {"brand": who.brand, "buyer_name": who.buyer_name, **context}),
        now=now,
        attachments=attachments,
    )


async def record_payment_succeeded(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    """Queue the payment confirmation. The invoice is named by its number when notify has seen
    it issued, by its id otherwise (payments and invoices travel on different topics)."""
    payment: PaymentSucceeded = event.data
    span_attributes = {"notify.template": PAYMENT_RECEIVED, "billing.invoice_id": payment.invoice_id}
    with tracer.start_as_current_span("notify decide", attributes=span_attributes):
        who = await audience(session, event.tenant, payment.account_id, payment.invoice_id, default_sender_email)
        invoice_number = who.invoice.number if who.invoice else payment.invoice_id
        context = {"payment": payment, "invoice_number": invoice_number, "portal_url": who.brand.portal_url}
        return await _record_to(session, event, who, PAYMENT_RECEIVED, seller_id=payment.seller_id, context=context, now=now)


async def record_comparison_report(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    """The comparison report (this period against the last) to the buyer, its spreadsheet attached."""
    report: ComparisonReportReady = event.data
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": COMPARISON_REPORT, "billing.invoice_id": report.invoice_id}):
        who = await audience(session, event.tenant, report.buyer_account_id, report.invoice_id, default_sender_email)
        invoice_number = report.invoice_number or (who.invoice.number if who.invoice else None)
        fallback = f"{invoice_number}-comparison.xlsx" if invoice_number else f"comparison-{report.period_start:%Y-%m}.xlsx"
        attached = [attachment(d, fallback) for d in report.documents if d.kind == "xlsx"][:1]
        context = {
            "report": report,
            "invoice_number": invoice_number,
            "buyer_name": report.buyer_name or who.buyer_name,
            "filename": attached[0]["filename"] if attached else None,
            # Sent ahead of its invoice (seed 001: the first business day), or again when the invoice differs.
            "invoice_expected_on": report.invoice_expected_on,
            "revised": report.revised,
        }
        return await _record_to(session, event, who, COMPARISON_REPORT, seller_id=report.seller_id, context=context, now=now, attachments=attached)


async def record_project_work_statement(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    """The project-work statement (seed 001) to the buyer at once, its PDF attached: informational,
    nothing to pay now; the charge comes on the next invoice."""
    statement: ProjectWorkStatementIssued = event.data
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": PROJECT_WORK_STATEMENT, "billing.statement_id": statement.statement_id}):
        contact = await contacts.get(session, event.tenant, statement.buyer.account_id)
        recipient = _recipient_or_none(contact.billing_email if contact else None) or _recipient_or_none(statement.buyer.email)
        brand = await effective_brand(session, event.tenant, seller_name=statement.seller.name, default_sender_email=default_sender_email)
        attached = [attachment(d, f"{statement.number}.pdf") for d in statement.documents if d.kind == "pdf"][:1]
        context = {
            "statement": statement,
            "brand": brand,
            "buyer_name": contact.name if contact else statement.buyer.name,
            "filename": attached[0]["filename"] if attached else None,
        }
        return await _record(
            session,
            event,
            template=PROJECT_WORK_STATEMENT,
            account_id=statement.buyer.account_id,
            seller_id=statement.seller.account_id,
            invoice_id=None,
            recipient=recipient,
            brand=brand,
            rendered=render(PROJECT_WORK_STATEMENT, context),
            now=now,
            attachments=attached,
        )


async def record_payment_failed(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    """Tell the buyer a collection failed, with the provider's reason."""
    payment: PaymentFailed = event.data
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": PAYMENT_FAILED, "billing.invoice_id": payment.invoice_id}):
        who = await audience(session, event.tenant, payment.account_id, payment.invoice_id, default_sender_email)
        context = {"payment": payment, **_invoice_context(who, payment.invoice_id, payment.amount)}
        return await _record_to(session, event, who, PAYMENT_FAILED, seller_id=payment.seller_id, context=context, now=now)


async def record_dunning_step(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery | None:
    """A reminder or a final notice for a step that calls for one; retry and suspend steps are
    told by their own events (the payment outcome, AccountSuspended)."""
    step: DunningStepReached = event.data
    template = STEP_TEMPLATES.get(step.action)
    if template is None:
        return None
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": template, "billing.invoice_id": step.invoice_id}):
        who = await audience(session, event.tenant, step.account_id, step.invoice_id, default_sender_email)
        context = {"step": step, **_invoice_context(who, step.invoice_id, step.amount_overdue)}
        return await _record_to(session, event, who, template, seller_id=step.seller_id, context=context, now=now)


async def record_account_suspended(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    suspension: AccountSuspended = event.data
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": SUSPENSION, "billing.account_id": suspension.account_id}):
        who = await audience(session, event.tenant, suspension.account_id, None, default_sender_email)
        context = {
            "suspension": suspension,
            # AccountSuspended names the dunning case, not its invoice: a case id means nothing to a reader.
            "invoice_number": None,
            "pay": invoice_how_to_pay(who, None),
        }
        return await _record_to(session, event, who, SUSPENSION, seller_id=suspension.seller_id, context=context, now=now)


async def record_portal_sign_in(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    """A portal sign-in link (or invitation) to the one address it was issued for, in the partner's
    brand. The link is a credential for its few minutes: it goes to `email` only, never to the
    account's billing contact."""
    link: PortalSignInLinkIssued = event.data
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": PORTAL_SIGN_IN, "portal.user_id": link.user_id}):
        brand = await effective_brand(session, event.tenant, seller_name=None, default_sender_email=default_sender_email)
        return await _record(
            session,
            event,
            template=PORTAL_SIGN_IN,
            account_id=link.account_id or event.tenant,
            seller_id=event.tenant,
            invoice_id=None,
            recipient=_recipient_or_none(link.email),
            brand=brand,
            rendered=render(PORTAL_SIGN_IN, {"link": link, "brand": brand}),
            now=now,
        )


async def record_account_reinstated(session: AsyncSession, event: CloudEvent[Any], *, now: datetime, default_sender_email: str) -> Delivery:
    reinstatement: AccountReinstated = event.data
    with tracer.start_as_current_span("notify decide", attributes={"notify.template": REINSTATEMENT, "billing.account_id": reinstatement.account_id}):
        who = await audience(session, event.tenant, reinstatement.account_id, None, default_sender_email)
        return await _record_to(session, event, who, REINSTATEMENT, seller_id=reinstatement.seller_id, context={"reinstatement": reinstatement}, now=now)


def build_message(delivery: Delivery, now: datetime, attachments: list[tuple[str, str, bytes]] | None = None) -> EmailMessage:
    """The MIME message: plain text first, the HTML as its alternative, then the attachments
    (file name, content type, bytes)."""
    if delivery.recipient is None:
        raise ValueError("a delivery without a recipient cannot be sent")
    message = EmailMessage()
    message["From"] = Address(display_name=delivery.from_name, addr_spec=delivery.from_email)
    message["To"] = delivery.recipient
    message["Subject"] = delivery.subject
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = message_id(delivery)
    # Tells auto-responders not to answer a machine.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(delivery.body_text)
    message.add_alternative(delivery.body_html, subtype="html")
    for filename, content_type, content in attachments or []:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return message


def delivered_event(runtime: ServiceRuntime, delivery: Delivery, at: datetime) -> CloudEvent[Any]:
    """NotificationDelivered for a sent email; its id is derived from the delivery's."""
    assert delivery.recipient is not None
    return runtime.event(
        NotificationDelivered(
            notification_id=delivery.delivery_id,
            account_id=delivery.account_id,
            seller_id=delivery.seller_id,
            channel="email",
            template=delivery.template,
            recipient=delivery.recipient,
            cause_event_id=delivery.cause_event_id,
            delivered_at=at,
        ),
        tenant=delivery.tenant,
        event_id=derived_event_id("notify", "delivered", delivery.delivery_id),
        subject=delivery.invoice_id,
    )


async def settle_sent_many(runtime: ServiceRuntime, session: AsyncSession, sent: list[tuple[Delivery, datetime, CloudEvent[Any] | None]]) -> set[str]:
    """Mark deliveries sent (each at the time its SMTP hand-over finished) and emit their
    NotificationDelivered, in the caller's transaction, in one statement each; returns the ids
    marked (a row no longer `sending` is another sender's, and gets no event from us)."""
    if not sent:
        return set()
    marked = await repo.mark_sent_many(session, [(d.delivery_id, at) for d, at, _ in sent])
    events = [event or delivered_event(runtime, d, at) for d, at, event in sent if d.delivery_id in marked]
    if events:
        await runtime.outbox.add(session, *events)
    for d, _, _ in sent:
        if d.delivery_id in marked:
            EMAILS.labels(d.template, "sent").inc()
    return marked


async def settle_failed(
    session: AsyncSession,
    delivery: Delivery,
    error: str,
    *,
    now: datetime,
    permanent: bool,
    max_attempts: int,
    backoff_seconds: float,
    backoff_max_seconds: float,
) -> str:
    """After a failed attempt: back to pending with a later next attempt, or `failed` when the
    error is permanent or the attempts are used up. Returns the new status."""
    if permanent or delivery.attempts >= max_attempts:
        status, next_at = "failed", None
    else:
        status, next_at = "pending", now + backoff(delivery.attempts, backoff_seconds, backoff_max_seconds)
    if await repo.mark_unsent(session, delivery.delivery_id, status=status, next_attempt_at=next_at, error=error[:2000]):
        EMAILS.labels(delivery.template, "failed" if status == "failed" else "retry").inc()
    return status
