"""What each standard email tells its reader to do next (BILLING-RULES §9): amount, due date, how to
pay (portal, the hosted invoice, bank transfer with the invoice's RF reference) and whom to ask, in
words a reader knows. The HTML is opened in headless Chromium (Debian's, through Playwright) and read
back as a person sees it; with DOCS_SHOTS_DIR set each email is also kept there as a screenshot."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from notify_testkit import NORTHWIND, PLAIN, comparison_report, project_work
from playwright.sync_api import Browser, sync_playwright

from billing_events import DocumentLink, InvoiceIssued, Money
from billing_events.references import creditor_reference, printed
from notify.delivery.instructions import how_to_pay
from notify.templates.render import RenderedEmail, render

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
NUMBER = "NW-2026-000318"
REFERENCE = printed(creditor_reference(NUMBER))  # RF62 NW20 2600 0318, what payments matches transfers by
PDF = "https://billing.northwind.example/invoicing/v1/shared/pdf-token"
XML = "https://billing.northwind.example/invoicing/v1/shared/xml-token"
BRAND = NORTHWIND
PORTAL = BRAND.portal_url
OVERDUE = Money.of("599.25", "USD")
DUE = date(2026, 12, 5)


def pay(amount: Money | None = OVERDUE, number: str | None = NUMBER) -> Any:
    return how_to_pay(BRAND, amount=amount, due_on=DUE if number else None, invoice_number=number, document_url=PDF if number else None)


def emails(make_invoice: Callable[..., InvoiceIssued]) -> dict[str, RenderedEmail]:
    """Every standard email, rendered from the context its decision in notify.delivery.service builds."""
    documents = [DocumentLink(kind="pdf", url="/v1/invoices/i/pdf", shared_url=PDF), DocumentLink(kind="cii_xml", url="/v1/invoices/i/xml", shared_url=XML)]
    invoice = make_invoice(buyer_account_id="acc-1", number=NUMBER, documents=documents)
    who = {"brand": BRAND, "buyer_name": "Contoso Dental"}
    step = SimpleNamespace(days_overdue=7, amount_overdue=OVERDUE)
    report = comparison_report(date(2026, 10, 1), date(2026, 10, 31))
    failed = SimpleNamespace(amount=OVERDUE, failed_on=date(2026, 12, 5), reason="Insufficient funds", method="card")
    paid = SimpleNamespace(amount=OVERDUE, paid_on=date(2026, 12, 8), reference=REFERENCE)
    final = SimpleNamespace(days_overdue=21, amount_overdue=OVERDUE)
    suspended = SimpleNamespace(suspended_on=date(2026, 12, 26), cascaded_from=None)
    return {
        "invoice_issued": render("invoice_issued", {**who, "invoice": invoice, "pay": pay(invoice.total)}),
        "reminder": render("reminder", {**who, "step": step, "invoice_number": NUMBER, "due_on": DUE, "pay": pay()}),
        "final_notice": render("final_notice", {**who, "step": final, "invoice_number": NUMBER, "due_on": DUE, "pay": pay()}),
        "payment_failed": render("payment_failed", {**who, "payment": failed, "invoice_number": NUMBER, "due_on": DUE, "pay": pay()}),
        "payment_received": render("payment_received", {**who, "payment": paid, "invoice_number": NUMBER, "portal_url": PORTAL}),
        "suspension": render("suspension", {**who, "suspension": suspended, "invoice_number": None, "pay": pay(None, None)}),
        "reinstatement": render("reinstatement", {**who, "reinstatement": SimpleNamespace(reinstated_on=date(2026, 12, 28))}),
        "project_work_statement": render("project_work_statement", {**who, "statement": project_work(), "filename": "TSD-PW-000001.pdf"}),
        "comparison_report": render(
            "comparison_report",
            {**who, "report": report, "invoice_number": NUMBER, "filename": f"{NUMBER}-comparison.xlsx", "invoice_expected_on": None, "revised": False},
        ),
        "comparison_report_ahead": render(
            "comparison_report",
            {
                **who,
                "report": report,
                "invoice_number": None,
                "filename": "comparison-2026-10.xlsx",
                "invoice_expected_on": date(2026, 11, 10),
                "revised": False,
            },
        ),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def seen(browser: Browser, name: str, mail: RenderedEmail) -> str:
    """The email's HTML as Chromium shows it (its visible text); kept as a screenshot with DOCS_SHOTS_DIR."""
    page = browser.new_page(viewport={"width": 760, "height": 900})
    try:
        page.set_content(mail.html, wait_until="load")
        shots = os.environ.get("DOCS_SHOTS_DIR")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"email-{name}.png"), full_page=True)
        return page.inner_text("body")
    finally:
        page.close()


# What each email must tell: the figures and the next step, in both parts.
EXPECTED = {
    "invoice_issued": ["599.25 USD", "5 December 2026", "How to pay", "DE89 3704 0044 0532 0130 00", "COBADEFFXXX", REFERENCE, "billing@northwind.example"],
    "reminder": ["7 days", "599.25 USD", "5 December 2026", REFERENCE, "DE89 3704 0044 0532 0130 00", "+1 319 555 0100"],
    "final_notice": ["final notice", "599.25 USD", "suspended", REFERENCE, "billing@northwind.example"],
    "payment_failed": ["Insufficient funds", "add another card", "599.25 USD", REFERENCE, "billing@northwind.example"],
    "payment_received": ["599.25 USD", "8 December 2026", "nothing more to do", "billing@northwind.example"],
    "suspension": ["26 December 2026", "an overdue invoice", "pay the overdue amount", "DE89 3704 0044 0532 0130 00", "billing@northwind.example"],
    "reinstatement": ["28 December 2026", "billing@northwind.example"],
    "project_work_statement": ["TSD-PW-000001", "No payment is due now", "312.50 USD", "2.5 at 125.00 USD", "next regular invoice", "northwind.example"],
    "comparison_report": [NUMBER, "1516.25 USD", "35.00 USD", "Nothing is to be paid", "one sheet per customer", "billing@northwind.example"],
    "comparison_report_ahead": [
        "October 2026",
        "1516.25 USD",
        "follows on 10 November 2026",
        "Nothing is to be paid",
        "one sheet per customer",
        "billing@northwind.example",
    ],
}


def test_every_standard_email_says_what_to_do_next(browser: Browser, make_invoice: Callable[..., InvoiceIssued]) -> None:
    rendered = emails(make_invoice)
    assert set(rendered) == set(EXPECTED)
    for name, mail in rendered.items():
        visible = seen(browser, name, mail)
        for part, body in (("html", visible), ("text", mail.text)):
            missing = [fact for fact in EXPECTED[name] if fact.lower() not in body.lower()]
            assert not missing, (name, part, missing, body)
        # No codes or identifiers a reader would not know.
        for jargon in ("CII_XML", "cii_xml", "PDF:", "Tax O", "None"):
            assert jargon not in visible and jargon not in mail.text, (name, jargon)


def test_the_invoice_email_links_what_a_reader_can_open(browser: Browser, make_invoice: Callable[..., InvoiceIssued]) -> None:
    mail = emails(make_invoice)["invoice_issued"]
    assert "Download the e-invoice (XML)" in seen(browser, "invoice_issued", mail)
    assert f'href="{PORTAL}"' in mail.html and f'href="{PDF}"' in mail.html and f'href="{XML}"' in mail.html
    # The plain text reads as a letter: links on lines of their own, the reference with its explanation.
    lines = mail.text.splitlines()
    assert PORTAL in lines and PDF in lines and XML in lines
    assert f"Payment reference: {REFERENCE}" in lines
    assert "Please quote the payment reference exactly, so that your payment is matched to this invoice." in lines
    # Totals aligned as a column; the PDF linked once (in How to pay), not again under the downloads.
    assert {"Net total:              599.25 USD", "Not subject to VAT:     0.00 USD", "Total to pay:           599.25 USD"} <= set(lines)
    assert lines.count(PDF) == 1 and mail.html.count(f'href="{PDF}"') == 1
    assert "Download the invoice (PDF)" not in mail.text and "Open the invoice (PDF)" in mail.text
    # An overdue invoice's date says it has passed.
    reminder = emails(make_invoice)["reminder"]
    assert "Was due on:        5 December 2026" in reminder.text.splitlines() and "Was due on" in reminder.html
    # Dates and periods in words.
    assert "Northwind IT Ltd has issued invoice NW-2026-000318 for October 2026:" in lines and "Due on:         5 December 2026" in lines


def test_no_reference_without_the_invoice_number_nor_bank_details_without_an_account() -> None:
    # notify knows only an id when it did not see the invoice issued: a reference from it would match nothing.
    unknown = how_to_pay(BRAND, amount=OVERDUE, due_on=None, invoice_number=None, document_url=None)
    assert unknown.reference is None and unknown.iban == "DE89 3704 0044 0532 0130 00"
    plain = how_to_pay(PLAIN, amount=OVERDUE, due_on=DUE, invoice_number=NUMBER, document_url="/v1/invoices/i/pdf")
    assert (plain.reference, plain.bank_transfer, plain.document_url) == (None, False, None)  # a relative link opens nothing
    mail = render(
        "reminder",
        {
            "brand": PLAIN,
            "buyer_name": "Contoso",
            "step": SimpleNamespace(days_overdue=1, amount_overdue=OVERDUE),
            "invoice_number": NUMBER,
            "due_on": DUE,
            "pay": plain,
        },
    )
    assert "bank transfer" not in mail.text and "IBAN" not in mail.html
    assert "1 day overdue" in mail.text and "Questions? Write to invoices@northwind.example." in mail.text
