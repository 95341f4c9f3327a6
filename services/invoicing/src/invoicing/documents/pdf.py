"""The human-readable document: HTML from a Jinja2 template in the seller's brand colour, rendered
to PDF/A-3b by WeasyPrint (PDF/A-3 so that the Factur-X XML can be embedded in it). WeasyPrint is
imported by the rendering processes only, when they render: the service's own process imports this
module (the pool's tasks are named by it) but renders nothing, and WeasyPrint with Pango and its
CSS machinery took 29 MB of its memory."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from billing_events.money import money_str
from invoicing.documents.content import DocContent

if TYPE_CHECKING:
    from weasyprint.text.fonts import FontConfiguration


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("invoicing.documents", "templates"), autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined)


def render_html(doc: DocContent) -> str:
    def money(amount: Decimal) -> str:
        return money_str(amount, doc.currency)

    def plain(value: Decimal) -> str:
        return format(value.quantize(Decimal(1)) if value == value.to_integral() else value, "f")

    return _environment().get_template("document.html.j2").render(doc=doc, money=money, plain=plain)


@cache
def _font_config() -> FontConfiguration:
    """One font configuration (Pango font map, loaded fonts and their shaping caches) for every
    rendering of the process: a new one per document cost about a fifth of the rendering's CPU.
    Not for threads: a rendering process renders one document at a time."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


def render_pdf(doc: DocContent) -> bytes:
    import weasyprint

    html = weasyprint.HTML(string=render_html(doc))
    pdf: bytes = html.write_pdf(pdf_variant="pdf/a-3b", font_config=_font_config())
    return pdf
