"""Unit: templates render escaped, complete, and with exact money."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest
from jinja2 import UndefinedError
from notify_testkit import NORTHWIND, comparison_report, project_work

from billing_events import InvoiceIssued, Money
from notify.brand.service import EffectiveBrand
from notify.delivery.instructions import how_to_pay
from notify.templates.render import money, render

BRAND = dataclasses.replace(NORTHWIND, logo_url="https://cdn.example/logo.png", footer="Northwind IT Ltd, 1 Main St")


def pay(invoice_number: str | None = "INV-1", amount: Money | None = None, brand: EffectiveBrand = BRAND) -> object:
    return how_to_pay(brand, amount=amount or Money.of("10.50", "EUR"), due_on=None, invoice_number=invoice_number, document_url=None)


def test_invoice_email_has_subject_dates_lines_and_totals(make_invoice: Callable[..., InvoiceIssued]) -> None:
    invoice = make_invoice(buyer_account_id="acc-1", number="NW-2026-000318")
    mail = render("invoice_issued", {"invoice": invoice, "brand": BRAND, "buyer_name": "Contoso Dental", "pay": pay(invoice.number, invoice.total)})
    assert mail.subject == "Invoice NW-2026-000318 from Northwind IT Ltd"
    for body in (mail.text, mail.html):
        assert "NW-2026-000318" in body
        assert "October 2026" in body  # period
        assert "2 November 2026" in body  # issued on
        assert "5 December 2026" in body  # due on
        assert "User support" in body and "Hosted email" in body
        assert "525.00 USD" in body and "6.75 USD" in body
        assert "599.25 USD" in body
    assert "#AA3300" in mail.html
    assert 'src="https://cdn.example/logo.png"' in mail.html
    assert "Northwind IT Ltd, 1 Main St" in mail.text


def test_customer_name_is_escaped_in_html_but_kept_in_text(make_invoice: Callable[..., InvoiceIssued]) -> None:
    name = "<script>alert('x')</script> & Sons"
    invoice = make_invoice(buyer_account_id="acc-1", seller_name="Tom & Jerry <Ltd>")
    mail = render("invoice_issued", {"invoice": invoice, "brand": BRAND, "buyer_name": name, "pay": pay()})
    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Sons" in mail.html
    assert "Tom &amp; Jerry &lt;Ltd&gt;" in mail.html
    assert name in mail.text  # plain text is not HTML: no entities there
    assert mail.subject == "Invoice NW-2026-000001 from Tom & Jerry <Ltd>"


def test_missing_variable_raises(make_invoice: Callable[..., InvoiceIssued]) -> None:
    invoice = make_invoice(buyer_account_id="acc-1")
    with pytest.raises(UndefinedError):
        render("invoice_issued", {"invoice": invoice, "brand": BRAND})


def test_subject_is_one_line(make_invoice: Callable[..., InvoiceIssued]) -> None:
    invoice = make_invoice(buyer_account_id="acc-1", seller_name="Evil\r\nBcc: someone@example.com")
    mail = render("invoice_issued", {"invoice": invoice, "brand": BRAND, "buyer_name": "x", "pay": pay()})
    assert "\n" not in mail.subject and "\r" not in mail.subject


def test_money_is_the_exact_decimal_with_its_currency() -> None:
    assert money(Money.of("1516.25", "USD")) == "1516.25 USD"
    assert money(Money.of("0.10", "EUR")) == "0.10 EUR"
    assert money(Money.of("1000", "JPY")) == "1000 JPY"
    assert money(Decimal("12.500"), "GBP") == "12.500 GBP"
    with pytest.raises(ValueError):
        money(Decimal("1"))


def test_payment_received_names_the_invoice() -> None:
    from billing_events import PaymentSucceeded

    payment = PaymentSucceeded(
        payment_id="p-1",
        invoice_id="inv-1",
        seller_id="s",
        account_id="a",
        amount=Money.of("599.25", "USD"),
        method="card",
        provider="stripe",
        paid_on="2026-12-01",
        reference=None,
    )
    mail = render("payment_received", {"payment": payment, "invoice_number": "NW-1", "brand": BRAND, "buyer_name": "Contoso", "portal_url": None})
    assert mail.subject == "Payment received for invoice NW-1"
    assert "599.25 USD" in mail.text and "599.25 USD" in mail.html
    assert "1 December 2026" in mail.text


@pytest.mark.parametrize(
    ("template", "context", "subject", "facts"),
    [
        (
            "payment_failed",
            {"payment": SimpleNamespace(amount=Money.of("10.50", "EUR"), failed_on="2026-12-05", reason="<b>Refused</b>", method="card"), "due_on": None},
            "Payment for invoice INV-1 failed",
            ["10.50 EUR", "5 December 2026"],
        ),
        ("reminder", {"step": SimpleNamespace(days_overdue=3, amount_overdue=Money.of("10.50", "EUR")), "due_on": "2026-12-01"}, None, ["10.50 EUR", "3 days"]),
        ("final_notice", {"step": SimpleNamespace(days_overdue=14, amount_overdue=Money.of("10.50", "EUR")), "due_on": None}, None, ["14 days"]),
        ("suspension", {"suspension": SimpleNamespace(suspended_on="2026-12-26", cascaded_from=None)}, None, ["26 December 2026", "an overdue invoice"]),
        ("reinstatement", {"reinstatement": SimpleNamespace(reinstated_on="2026-12-28")}, None, ["28 December 2026"]),
    ],
)
def test_collection_and_dunning_templates(template: str, context: dict[str, object], subject: str | None, facts: list[str]) -> None:
    number = None if template == "suspension" else "INV-1"
    mail = render(template, {**context, "brand": BRAND, "buyer_name": "<i>Contoso</i>", "invoice_number": number, "pay": pay(number)})
    if subject is not None:
        assert mail.subject == subject
    for body in (mail.text, mail.html):
        assert all(fact in body for fact in facts), body
        assert "Northwind IT Ltd, 1 Main St" in body
    assert "&lt;i&gt;Contoso&lt;/i&gt;" in mail.html and "<i>" not in mail.html
    assert "#AA3300" in mail.html and "<i>Contoso</i>" in mail.text


def test_document_mails_name_their_attachment() -> None:
    statement = render("project_work_statement", {"statement": project_work(), "brand": BRAND, "buyer_name": "Contoso", "filename": "TSD-PW-000001.pdf"})
    assert statement.subject == "Project work statement TSD-PW-000001 for Contoso Dental: no payment due" and "TSD-PW-000001.pdf" in statement.text
    report = comparison_report(date(2026, 11, 1), date(2026, 11, 30))
    context = {"report": report, "brand": BRAND, "buyer_name": "Contoso", "invoice_expected_on": None, "revised": False}
    mail = render("comparison_report", {**context, "invoice_number": "NW-1", "filename": "NW-1.xlsx"})
    assert mail.subject == "Invoice comparison for November 2026, Contoso: invoice NW-1"
    for body in (mail.text, mail.html):
        assert "NW-1.xlsx" in body and "35.00 USD" in body and "1481.25 USD" in body and "November 2026" in body
    # Seed 001: sent on the first business day, the invoice a week or two later.
    ahead = render("comparison_report", {**context, "invoice_number": None, "filename": "comparison-2026-11.xlsx", "invoice_expected_on": date(2026, 12, 10)})
    assert ahead.subject == "Invoice comparison for November 2026, Contoso: to be invoiced"
    for body in (ahead.text, ahead.html):
        assert "The invoice itself follows on 10 December 2026" in body and "the charges your invoice will show" in body
    revised = render("comparison_report", {**context, "invoice_number": "NW-1", "filename": "NW-1.xlsx", "revised": True})
    assert revised.subject == "Updated invoice comparison for November 2026, Contoso: invoice NW-1"
    assert "differs from the comparison report we sent you ahead of it" in revised.text
