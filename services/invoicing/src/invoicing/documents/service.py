"""Documents on demand (BILLING-RULES §7): rendered on the first download, then kept, so an issued
invoice's PDF and XML never change. Rendering runs in a worker thread (WeasyPrint is CPU-bound)."""

from __future__ import annotations

import asyncio
from typing import Literal

from opentelemetry import trace
from prometheus_client import Counter, Histogram

from billing_runtime.errors import Conflict, NotFound
from billing_runtime.service import ServiceRuntime
from invoicing.creditnote import repository as credit_repo
from invoicing.documents import repository as repo
from invoicing.documents.content import DocContent, credit_note_content, invoice_content
from invoicing.documents.facturx import DocumentUnavailable, cii_xml, embed
from invoicing.documents.pdf import render_pdf
from invoicing.invoice import repository as invoice_repo
from invoicing.seller import repository as seller_repo

tracer = trace.get_tracer(__name__)
DOCUMENTS_RENDERED = Counter("billing_documents_rendered_total", "Documents rendered (PDF with Factur-X XML)", ["kind"])
RENDER_SECONDS = Histogram("billing_document_render_seconds", "Time to render one document (PDF and XML)", buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10))

OwnerKind = Literal["invoice", "credit_note"]
Format = Literal["pdf", "xml"]


class DocumentNotAvailable(Conflict):
    code = "document_unavailable"


def render(doc: DocContent) -> dict[str, bytes]:
    """Both formats of one document: the CII XML, and the PDF/A-3 carrying it."""
    xml = cii_xml(doc)
    return {"xml": xml, "pdf": embed(render_pdf(doc), xml)}


async def _content(runtime: ServiceRuntime, seller_id: str, kind: OwnerKind, owner_id: str, buyer_account_id: str | None = None) -> DocContent:
    async with runtime.sessions() as session:
        seller = await seller_repo.get(session, seller_id)
        brand = seller.brand_color if seller is not None else None
        if kind == "invoice":
            row = await invoice_repo.get_invoice(session, seller_id, owner_id, buyer_account_id=buyer_account_id)
            if row is None:
                raise NotFound(f"no invoice {owner_id!r}", code="invoice_not_found")
            return invoice_content(row, await invoice_repo.get_lines(session, owner_id), brand)
        note = await credit_repo.get(session, seller_id, owner_id, buyer_account_id=buyer_account_id)
        if note is None:
            raise NotFound(f"no credit note {owner_id!r}", code="credit_note_not_found")
        invoice = await invoice_repo.get_invoice(session, seller_id, note.invoice_id)
        return credit_note_content(note, await credit_repo.get_lines(session, owner_id), invoice, brand)


async def document(
    runtime: ServiceRuntime, seller_id: str, kind: OwnerKind, owner_id: str, fmt: Format, *, buyer_account_id: str | None = None
) -> tuple[str, bytes]:
    """(file name, bytes) of the seller's invoice or credit note in `fmt`, rendering it the first
    time; with `buyer_account_id` (a key restricted to one account), only that buyer's."""
    attributes = {"billing.document_kind": kind, "billing.document_format": fmt, "billing.owner_id": owner_id}
    with tracer.start_as_current_span("document", attributes=attributes) as span:
        content = await _content(runtime, seller_id, kind, owner_id, buyer_account_id)
        name = f"{content.number}.{fmt}"
        async with runtime.sessions() as session:
            stored = await repo.get(session, kind, owner_id, fmt)
        if stored is not None:
            return name, stored
        span.set_attribute("billing.rendered", True)
        with RENDER_SECONDS.time():
            try:
                rendered = await asyncio.to_thread(render, content)
            except DocumentUnavailable as exc:
                raise DocumentNotAvailable(str(exc)) from exc
        now = runtime.clock.now()
        async with runtime.transaction() as session:
            key = {"owner_kind": kind, "owner_id": owner_id, "seller_id": seller_id, "rendered_at": now}
            rows = [{**key, "format": f, "content": b} for f, b in rendered.items()]
            await repo.store(session, rows)
        async with runtime.sessions() as session:
            kept = await repo.get(session, kind, owner_id, fmt)
        DOCUMENTS_RENDERED.labels(kind).inc()
        return name, kept if kept is not None else rendered[fmt]
