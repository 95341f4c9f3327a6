"""What a rendering process runs: both formats of one document from its content. Kept apart from
the service (no database, web or Kafka modules), so a rendering process imports only WeasyPrint,
drafthorse and factur-x: about 86 MB resident where importing the service took 127 MB."""

from __future__ import annotations

import os

from invoicing.documents.content import DocContent
from invoicing.documents.facturx import cii_xml, embed
from invoicing.documents.pdf import _environment, _font_config, render_pdf


def render(doc: DocContent) -> dict[str, bytes]:
    """Both formats of one document: the CII XML, and the PDF/A-3 carrying it."""
    xml = cii_xml(doc)
    return {"xml": xml, "pdf": embed(render_pdf(doc), xml)}


# Rendering runs below the service's own priority: documents rendered ahead must not take the CPU
# from the consumers issuing a month close's invoices (on 2 cores they took half of it, and
# invoicing's part of a 2,000-invoice close went from 12 s to 46 s); on an idle CPU it changes nothing.
NICENESS = 10


def warm() -> None:
    """A rendering process's first task: its lower priority, then the template and the fonts,
    before the first document."""
    os.nice(NICENESS)
    _environment().get_template("document.html.j2")
    _font_config()
