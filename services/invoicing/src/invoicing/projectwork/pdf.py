"""The statement as a PDF (WeasyPrint, PDF/A-3b like the invoices, without an e-invoice inside:
a statement is not an invoice). Imports only the renderer, so a rendering process can run it;
WeasyPrint itself when it renders (see invoicing.documents.pdf)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from billing_events.money import money_str
from invoicing.documents.pdf import _environment, _font_config


@dataclass(frozen=True)
class StatementContent:
    number: str
    issued_on: date
    seller: dict[str, Any]
    buyer: dict[str, Any]
    currency: str
    end_customer_name: str
    product_code: str
    description: str
    unit: str | None
    performed_on: date
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    billed_with_period_start: date
    billed_with_period_end: date
    brand_color: str


def render_statement_html(doc: StatementContent) -> str:
    def money(amount: Decimal) -> str:
        return money_str(amount, doc.currency)

    def plain(value: Decimal) -> str:
        return format(value.normalize() if value == value.to_integral() else value, "f")

    return _environment().get_template("project_work_statement.html.j2").render(doc=doc, money=money, plain=plain)


def render_statement(doc: StatementContent) -> bytes:
    import weasyprint

    pdf: bytes = weasyprint.HTML(string=render_statement_html(doc)).write_pdf(pdf_variant="pdf/a-3b", font_config=_font_config())
    return pdf
