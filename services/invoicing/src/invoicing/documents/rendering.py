"""What a rendering process runs: both formats of one document from its content. Kept apart from
the service (no database, web or Kafka modules), so a rendering process imports only WeasyPrint,
drafthorse and factur-x: about 86 MB resident where importing the service took 127 MB."""

from __future__ import annotations

from invoicing.documents.content import DocContent
from invoicing.documents.facturx import cii_xml, embed
from invoicing.documents.pdf import _environment, _font_config, render_pdf


def render(doc: DocContent) -> dict[str, bytes]:
    """Both formats of one document: the CII XML, and the PDF/A-3 carrying it."""
    xml = cii_xml(doc)
    return {"xml": xml, "pdf": embed(render_pdf(doc), xml)}


def warm() -> None:
    """A rendering process's first task: the template and the fonts, before the first document."""
    _environment().get_template("document.html.j2")
    _font_config()
