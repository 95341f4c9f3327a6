"""The standard notification set, end to end: events in over a real Tansu broker, documents
fetched from a real HTTP server, mail read back from a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import openpyxl
import pytest
import xlsxwriter
from notify_testkit import attachments, customer
from sqlalchemy import text

from billing_events import (
    AccountReinstated,
    AccountSuspended,
    CloudEvent,
    ComparisonReportReady,
    DocumentLink,
    DunningStepReached,
    InvoiceIssued,
    Money,
    Party,
    PaymentFailed,
    ProjectWorkStatementIssued,
    SellerPaymentAccountChanged,
    account_id,
    new_event,
)
from billing_events.references import creditor_reference, printed
from billing_runtime.testing import eventually, serve, tenant_headers
from notify.config import Settings
from notify.main import build

# Events are handed to notify in process (the `publish` fixture delivers them through the runtime's
# dispatch), so it is served without a broker consumer (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

BRAND = {
    "sender_name": "Northwind IT",
    "sender_email": "billing@northwind.example",
    "primary_color": "#0A7E3C",
    "logo_url": "https://cdn.northwind.example/logo.png",
    "footer": "Northwind IT Ltd, 1 Harbour Road",
    # Whom to ask and where to pay, which the collection mails give (the bank account comes from
    # invoicing's seller profile: `payment_account`).
    "support_email": "help@northwind.example",
    "portal_url": "https://portal.northwind.example/p/northwind/",
}
PDF = b"%PDF-1.7\n% an invoice\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


def payment_account(tenant: str, iban: str | None = "DE89370400440532013000", at: str = "2026-12-01T10:00:00+00:00") -> CloudEvent[Any]:
    """The seller's bank account as invoicing announces it from its seller profile."""
    data = SellerPaymentAccountChanged(
        seller_id=tenant, account_name="Northwind IT Ltd", iban=iban, bic="COBADEFFXXX" if iban else None, updated_at=datetime.fromisoformat(at)
    )
    return new_event(data, source="/services/invoicing", tenant=tenant)


def comparison_xlsx() -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet("Comparison")
    sheet.write_row(0, 0, ["Product", "Previous", "Current"])
    sheet.write_row(1, 0, ["USR-SUP", 14, 15])
    book.close()
    return out.getvalue()


@pytest.fixture
async def documents_client(settings: Settings, document_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    """notify served with invoicing's API at the document server: invoicing links its documents
    relative to its own API, and notify fetches them from there as the seller."""
    async with serve(build(settings.model_copy(update={"documents_base_url": document_server.base_url}))) as client:
        yield client


BrandAndContact = Callable[[str, str], Awaitable[None]]


@pytest.fixture
def brand_and_contact(documents_client: httpx.AsyncClient, tenant: str, publish_applied: Any) -> BrandAndContact:
    """`await brand_and_contact(external_id, recipient)`: the tenant's brand saved and its customer
    `external_id`'s billing contact `recipient` applied, in notify served with the document server:
    what a test's mails go out in, and to."""

    async def save(external_id: str, recipient: str) -> None:
        assert (await documents_client.put("/v1/brand", headers=tenant_headers(tenant), json=BRAND)).status_code == 200
        await publish_applied(customer(tenant, external_id, recipient))

    return save


def branded(mail: Any) -> None:
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert mail["From"] == "Northwind IT <billing@northwind.example>"
    assert "#0A7E3C" in html and 'src="https://cdn.northwind.example/logo.png"' in html
    assert "Northwind IT Ltd, 1 Harbour Road" in html and "Northwind IT Ltd, 1 Harbour Road" in text


async def test_invoice_pdf_and_comparison_xlsx_are_attached_in_the_brand(
    tenant: str,
    mailbox: Any,
    publish: Any,
    publish_applied: Any,
    document_server: Any,
    brand_and_contact: BrandAndContact,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    recipient = f"ap-{tenant}@contoso.example"
    await brand_and_contact("c-1", recipient)
    invoice_id = str(uuid.uuid4())
    document_server.put(f"/v1/invoices/{invoice_id}/pdf", "application/pdf", PDF)
    document_server.put(f"/v1/invoices/{invoice_id}/xml", "application/xml", b"<Invoice/>")
    xlsx = comparison_xlsx()
    xlsx_url = document_server.put(f"/{tenant}/NW-7-comparison.xlsx", "application/octet-stream", xlsx)
    invoice = make_invoice(
        buyer_account_id=account_id(tenant, "c-1"),
        number="NW-7",
        invoice_id=invoice_id,
        documents=[DocumentLink(kind="pdf", url=f"/v1/invoices/{invoice_id}/pdf"), DocumentLink(kind="cii_xml", url=f"/v1/invoices/{invoice_id}/xml")],
    )
    await publish_applied(new_event(invoice, source="/tests", tenant=tenant))
    report = ComparisonReportReady(
        report_id=str(uuid.uuid4()),
        seller_id="seller-account",
        buyer_account_id=account_id(tenant, "c-1"),
        invoice_id=invoice_id,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        currency="USD",
        this_period_total=Money.of("599.25", "USD"),
        last_period_total=Money.of("564.25", "USD"),
        difference=Money.of("35.00", "USD"),
        lines_added=0,
        lines_removed=0,
        lines_changed=1,
        documents=[DocumentLink(kind="json", url=f"{document_server.base_url}/{tenant}/report.json"), DocumentLink(kind="xlsx", url=xlsx_url)],
    )
    await publish(new_event(report, source="/tests", tenant=tenant))

    mails = await mailbox.wait_for(recipient, count=2)
    by_subject = {m["Subject"]: m for m in mails}
    invoice_mail = by_subject["Invoice NW-7 from Northwind IT Ltd"]
    [report_subject] = [s for s in by_subject if s.startswith("Invoice comparison for October 2026")]
    assert report_subject.endswith(": invoice NW-7") and invoice_id not in report_subject
    report_mail = by_subject[report_subject]
    for mail in (invoice_mail, report_mail):
        branded(mail)
        assert mail["To"] == recipient
    assert attachments(invoice_mail) == [("NW-7.pdf", "application/pdf", PDF)]
    [(name, content_type, content)] = attachments(report_mail)
    assert (name, content_type, content) == ("NW-7-comparison.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", xlsx)
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    assert [c.value for c in sheet[2]] == ["USR-SUP", 14, 15]
    assert "35.00 USD" in report_mail.get_body(("plain",)).get_content()
    fetched = dict(document_server.requests)
    assert fetched[f"/v1/invoices/{invoice_id}/pdf"]["x-tenant-id"] == tenant  # as the seller, at invoicing
    assert "x-tenant-id" not in fetched[f"/{tenant}/NW-7-comparison.xlsx"]  # an absolute URL is fetched as it is
    # Each document once and nothing else of this tenant's (the sender also serves other tests'
    # retrying deliveries, whose shared links name no tenant).
    ours = {path for path in fetched if not path.startswith("/v1/shared/")}
    assert ours == {f"/v1/invoices/{invoice_id}/pdf", f"/{tenant}/NW-7-comparison.xlsx"}


async def test_a_shared_link_is_attached_without_a_credential_and_linked_in_the_mail(
    tenant: str,
    mailbox: Any,
    publish_applied: Any,
    document_server: Any,
    brand_and_contact: BrandAndContact,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    # Invoicing with a public address: each document has an absolute shared link, which needs no key.
    recipient = f"ap-{tenant}@contoso.example"
    await brand_and_contact("c-2", recipient)
    invoice_id = str(uuid.uuid4())
    token = uuid.uuid4().hex
    shared_pdf = document_server.put(f"/v1/shared/{token}", "application/pdf", PDF)
    document_server.put(f"/v1/invoices/{invoice_id}/pdf", "application/pdf", b"%PDF-1.7 not this one")
    invoice = make_invoice(
        buyer_account_id=account_id(tenant, "c-2"),
        number="NW-8",
        invoice_id=invoice_id,
        documents=[
            DocumentLink(kind="pdf", url=f"/v1/invoices/{invoice_id}/pdf", shared_url=shared_pdf),
            DocumentLink(kind="cii_xml", url=f"/v1/invoices/{invoice_id}/xml", shared_url=f"/v1/shared/{uuid.uuid4().hex}"),
        ],
    )
    await publish_applied(new_event(invoice, source="/tests", tenant=tenant))
    [mail] = await mailbox.wait_for(recipient, count=1)
    assert attachments(mail) == [("NW-8.pdf", "application/pdf", PDF)]
    fetched = dict(document_server.requests)
    assert set(fetched) == {f"/v1/shared/{token}"} and "x-tenant-id" not in fetched[f"/v1/shared/{token}"]
    html, text = mail.get_body(("html",)).get_content(), mail.get_body(("plain",)).get_content()
    # The buyer can open the absolute link; the relative ones (API paths) are not shown.
    # Linked once, under How to pay ("Open the invoice (PDF)"), not a second time under the downloads.
    assert html.count(f'href="{shared_pdf}"') == 1 and "Open the invoice (PDF)" in html
    assert text.splitlines().count(shared_pdf) == 1 and "Open the invoice (PDF):" in text.splitlines()
    assert "/v1/invoices/" not in html and "/v1/invoices/" not in text and "CII_XML" not in html


async def test_a_missing_document_fails_the_delivery_with_the_reason(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Any,
    document_server: Any,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    recipient = f"ap-{tenant}@contoso.example"
    invoice = make_invoice(
        buyer_account_id=account_id(tenant, "c-1"),
        buyer_email=recipient,
        documents=[DocumentLink(kind="pdf", url=f"{document_server.base_url}/{tenant}/gone.pdf")],
    )
    await publish(new_event(invoice, source="/tests", tenant=tenant))

    async def failed() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await client.get("/v1/deliveries", headers=tenant_headers(tenant))).json()["items"]
        return rows if rows and rows[0]["status"] == "failed" else None

    [row] = await eventually(failed, "the delivery marked failed", 60, interval=0.1)
    assert row["status"] == "failed" and "HTTP 404" in row["last_error"]
    assert mailbox.to(recipient) == []


def dunning_events(tenant: str, buyer: str, invoice_id: str) -> list[CloudEvent[Any]]:
    overdue = Money.of("599.25", "USD")
    common = {"case_id": "case-1", "invoice_id": invoice_id, "seller_id": "seller-account", "account_id": buyer}
    data: list[Any] = [
        PaymentFailed(
            payment_id="dd-1",
            invoice_id=invoice_id,
            seller_id=tenant,
            account_id=buyer,
            amount=overdue,
            method="direct_debit",
            provider="gocardless",
            failed_on=date(2026, 12, 5),
            reason_code="insufficient_funds",
            reason="Insufficient funds",
        ),
        DunningStepReached(**common, step=1, action="remind", days_overdue=1, amount_overdue=overdue, reached_on=date(2026, 12, 6)),
        DunningStepReached(**common, step=2, action="retry", days_overdue=7, amount_overdue=overdue, reached_on=date(2026, 12, 12)),
        DunningStepReached(**common, step=4, action="final_notice", days_overdue=14, amount_overdue=overdue, reached_on=date(2026, 12, 19)),
        AccountSuspended(account_id=buyer, seller_id="seller-account", case_id="case-1", suspended_on=date(2026, 12, 26)),
        AccountReinstated(account_id=buyer, seller_id="seller-account", case_id="case-1", reinstated_on=date(2026, 12, 28)),
    ]
    return [new_event(d, source="/tests", tenant=tenant) for d in data]


async def test_collection_and_dunning_mails_reach_the_billing_contact(
    client: httpx.AsyncClient,
    tenant: str,
    mailbox: Any,
    publish: Any,
    publish_applied: Any,
    applied: Any,
    make_invoice: Callable[..., InvoiceIssued],
) -> None:
    assert (await client.put("/v1/brand", headers=tenant_headers(tenant), json=BRAND)).status_code == 200
    await publish_applied(payment_account(tenant))
    recipient = f"ap-{tenant}@contoso.example"
    buyer = account_id(tenant, "c-1")
    invoice = make_invoice(buyer_account_id=buyer, buyer_email=recipient, number="NW-9", invoice_id=str(uuid.uuid4()))
    await publish_applied(new_event(invoice, source="/tests", tenant=tenant))
    events = dunning_events(tenant, buyer, invoice.invoice_id)
    for e in events:
        await publish(e)
    # invoice + payment failed + reminder + final notice + suspension + reinstatement; no mail for the retry step.
    mails = await mailbox.wait_for(recipient, count=6)
    subjects = sorted(m["Subject"] for m in mails)
    assert subjects == sorted(
        [
            "Invoice NW-9 from Northwind IT Ltd",
            "Payment for invoice NW-9 failed",
            "Reminder: invoice NW-9 is 1 day overdue",
            "Final notice: invoice NW-9 (599.25 USD) is 14 days overdue",
            "Your service with Northwind IT is suspended",
            "Your service with Northwind IT is reinstated",
        ]
    )
    for mail in mails:
        branded(mail)
        assert mail["To"] == recipient and list(mail.iter_attachments()) == []
    by_subject = {m["Subject"]: m for m in mails}
    failed_text = by_subject["Payment for invoice NW-9 failed"].get_body(("plain",)).get_content()
    assert "Insufficient funds" in failed_text and "599.25 USD" in failed_text and "5 December 2026" in failed_text
    final_html = by_subject["Final notice: invoice NW-9 (599.25 USD) is 14 days overdue"].get_body(("html",)).get_content()
    assert "14 days" in final_html and "599.25 USD" in final_html
    assert "26 December 2026" in by_subject["Your service with Northwind IT is suspended"].get_body(("plain",)).get_content()
    # The reminder says how to pay: the portal, the seller's account and the RF reference payments matches by.
    reminder = by_subject["Reminder: invoice NW-9 is 1 day overdue"].get_body(("plain",)).get_content().splitlines()
    for expected in (
        f"Payment reference: {printed(creditor_reference('NW-9'))}",
        "IBAN:              DE89 3704 0044 0532 0130 00",
        "Was due on:        5 December 2026",  # the due date has passed
        "https://portal.northwind.example/p/northwind/",
        "Questions? Write to help@northwind.example.",
    ):
        assert expected in reminder, (expected, reminder)
    for e in events:
        assert await applied(e.id) == "applied"
    reminders = (await client.get("/v1/deliveries", headers=tenant_headers(tenant), params={"template": "reminder"})).json()["items"]
    assert len(reminders) == 1 and reminders[0]["status"] == "sent"


def test_shared_links_are_fetched_from_invoicing_inside_the_platform() -> None:
    from notify.delivery.sender import document_url

    public = "https://billing.example.com/invoicing/v1/shared/tok"
    # The public address is for buyers; notify reaches invoicing at its own base URL.
    assert document_url(public, "http://invoicing:8000", shared=True) == "http://invoicing:8000/v1/shared/tok"
    assert document_url("/v1/shared/tok", "http://invoicing:8000/", shared=True) == "http://invoicing:8000/v1/shared/tok"
    assert document_url(public, None, shared=True) == public
    assert document_url("/v1/invoices/i-1/pdf", "http://invoicing:8000") == "http://invoicing:8000/v1/invoices/i-1/pdf"
    assert document_url("https://cdn.example/report.xlsx", "http://invoicing:8000") == "https://cdn.example/report.xlsx"
    assert document_url("/v1/invoices/i-1/pdf", None) is None


async def test_a_project_work_statement_goes_out_at_once_with_its_pdf(
    tenant: str,
    mailbox: Any,
    publish_applied: Any,
    document_server: Any,
    brand_and_contact: BrandAndContact,
) -> None:
    # Seed 001: the statement reaches the partner as soon as the work is entered; nothing to pay.
    recipient = f"ap-{tenant}@northwind.example"
    await brand_and_contact("northwind", recipient)
    shared = document_server.put(f"/v1/shared/{uuid.uuid4().hex}", "application/pdf", PDF)
    usd = "USD"
    statement = ProjectWorkStatementIssued(
        statement_id=str(uuid.uuid4()),
        number="TSD-PW-000001",
        entry_id="tm-42",
        seller=Party(account_id=tenant, name="Tailspin Distribution Inc."),
        buyer=Party(account_id=account_id(tenant, "northwind"), name="Northwind IT LLC"),
        issued_on=date(2026, 10, 14),
        end_customer_id="contoso",
        end_customer_name="Contoso Dental",
        product_code="PROJ-TM",
        description="Project work: server build",
        performed_on=date(2026, 10, 14),
        quantity=Decimal("2.5"),
        unit_price=Money.of("125.00", usd),
        amount=Money.of("312.50", usd),
        billed_with_period_start=date(2026, 10, 1),
        billed_with_period_end=date(2026, 10, 31),
        documents=[DocumentLink(kind="pdf", url="/v1/project-work-statements/s/pdf", shared_url=shared)],
    )
    await publish_applied(new_event(statement, source="/tests", tenant=tenant))
    [mail] = await mailbox.wait_for(recipient, count=1)
    assert mail["Subject"] == "Project work statement TSD-PW-000001 for Contoso Dental: no payment due"
    assert attachments(mail) == [("TSD-PW-000001.pdf", "application/pdf", PDF)]
    text = mail.get_body(("plain",)).get_content()
    for expected in ("NO PAYMENT IS DUE NOW.", "312.50 USD", "2.5 at 125.00 USD", "October 2026", "Contoso Dental", "help@northwind.example"):
        assert expected in text, (expected, text)


async def test_the_bank_account_is_invoicings_and_the_brand_points_there(
    client: httpx.AsyncClient, tenant: str, publish: Any, publish_applied: Any, db: Any, mailbox: Any, make_invoice: Callable[..., InvoiceIssued]
) -> None:
    """One place for a seller's bank account: invoicing's seller profile (which the PDF prints),
    announced by SellerPaymentAccountChanged. The brand's own bank fields, set before, are shown
    until invoicing announces the seller's account; a brand PUT may carry them only unchanged."""
    brand = {k: v for k, v in BRAND.items() if k != "support_email"}
    refused = await client.put("/v1/brand", headers=tenant_headers(tenant), json={**brand, "iban": "DE89 3704 0044 0532 0130 00"})
    assert refused.status_code == 422 and refused.json()["code"] == "bank_details_owned_by_invoicing"
    assert "PUT /v1/seller on invoicing" in refused.json()["title"] and refused.json()["owner"] == "invoicing"
    assert (await client.put("/v1/brand", headers=tenant_headers(tenant), json=brand)).status_code == 200
    # A brand saved with an account before this change (migration 0007's columns): still shown.
    async with db.begin() as conn:
        await conn.execute(text("UPDATE notify.brand SET iban = 'GB33BUKB20201555555555', bic = 'BUKBGB22' WHERE tenant = :t"), {"t": tenant})
    legacy = (await client.get("/v1/brand", headers=tenant_headers(tenant))).json()
    assert (legacy["iban"], legacy["bank_details_source"]) == ("GB33BUKB20201555555555", "brand")
    assert (
        await client.put("/v1/brand", headers=tenant_headers(tenant), json={k: v for k, v in legacy.items() if k in BRAND or k in ("iban", "bic")})
    ).status_code == 200

    newer, older = (
        payment_account(tenant, at="2026-12-01T10:00:00+00:00"),
        payment_account(tenant, iban="IE29AIBK93115212345678", at="2026-11-01T10:00:00+00:00"),
    )
    for event in (newer, older):  # the older version arrives late: the newer stays
        await publish_applied(event)
    shown = (await client.get("/v1/brand", headers=tenant_headers(tenant))).json()
    assert (shown["iban"], shown["bic"], shown["bank_account_name"], shown["bank_details_source"]) == (
        "DE89370400440532013000",
        "COBADEFFXXX",
        "Northwind IT Ltd",
        "invoicing",
    )
    moved = await client.put("/v1/brand", headers=tenant_headers(tenant), json={**brand, "iban": "GB33BUKB20201555555555"})
    assert moved.status_code == 422 and moved.json()["field"] == "iban"

    recipient = f"ap-{tenant}@contoso.example"
    invoice = make_invoice(buyer_account_id=account_id(tenant, "c-2"), buyer_email=recipient, number="NW-11", invoice_id=str(uuid.uuid4()))
    issued = new_event(invoice, source="/tests", tenant=tenant)
    await publish(issued)
    [mail] = await mailbox.wait_for(recipient, count=1)
    text_part = mail.get_body(("plain",)).get_content()
    assert "IBAN:              DE89 3704 0044 0532 0130 00" in text_part and "GB33" not in text_part

    # The seller stops taking transfers: no bank details in the mails any more, not even the old brand's.
    await publish_applied(payment_account(tenant, iban=None, at="2026-12-02T10:00:00+00:00"))
    assert (await client.get("/v1/brand", headers=tenant_headers(tenant))).json()["iban"] is None
