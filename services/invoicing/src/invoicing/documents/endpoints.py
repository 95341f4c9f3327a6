"""Document downloads: the PDF (PDF/A-3 with the Factur-X EN 16931 XML embedded) and the XML alone,
with the seller's API key, or by a shared link (invoicing.documents.shares) without one."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from opentelemetry import trace

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant
from invoicing.comparison import repository as comparison_repo
from invoicing.comparison.service import XLSX_MEDIA_TYPE, report_filename, report_xlsx
from invoicing.config import Settings
from invoicing.documents.service import Format, OwnerKind, document
from invoicing.documents.shares import SHARED_DOWNLOADS, ShareNotFound, resolve
from invoicing.projectwork.service import statement_pdf

tracer = trace.get_tracer(__name__)

router = APIRouter(prefix="/v1", tags=["documents"])

MEDIA_TYPES: dict[str, str] = {"pdf": "application/pdf", "xml": "application/xml", "ubl": "application/xml"}
Syntax = Literal["cii", "ubl"]
SYNTAX = Query(
    "cii",
    description="cii: UN/CEFACT Cross Industry Invoice, Factur-X EN 16931 profile (the XML inside the PDF); "
    "ubl: OASIS UBL 2.1 as Peppol BIS Billing 3.0. Both EN 16931.",
)
XML_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/xml": {}}, "description": "The EN 16931 e-invoice in the syntax asked for."}
}
PDF_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The document as a PDF (Factur-X PDF/A-3 for an invoice or a credit note).",
    }
}


async def _download(runtime: Runtime[Settings], tenant: str, kind: OwnerKind, owner_id: str, fmt: Format, account: str | None) -> Response:
    name, content = await document(runtime, tenant, kind, owner_id, fmt, buyer_account_id=account)
    return Response(content, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/invoices/{invoice_id}/pdf", dependencies=[Read, ForAccount], response_class=Response, responses=PDF_RESPONSES)
async def invoice_pdf(invoice_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> Response:
    return await _download(runtime, tenant, "invoice", invoice_id, "pdf", account)


@router.get("/invoices/{invoice_id}/xml", dependencies=[Read, ForAccount], response_class=Response, responses=XML_RESPONSES)
async def invoice_xml(invoice_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount, syntax: Syntax = SYNTAX) -> Response:
    """The invoice's EN 16931 e-invoice: CII (default) or UBL 2.1 / Peppol BIS Billing 3.0."""
    return await _download(runtime, tenant, "invoice", invoice_id, "ubl" if syntax == "ubl" else "xml", account)


@router.get("/credit-notes/{credit_note_id}/pdf", dependencies=[Read, ForAccount], response_class=Response, responses=PDF_RESPONSES)
async def credit_note_pdf(credit_note_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> Response:
    return await _download(runtime, tenant, "credit_note", credit_note_id, "pdf", account)


@router.get("/credit-notes/{credit_note_id}/xml", dependencies=[Read, ForAccount], response_class=Response, responses=XML_RESPONSES)
async def credit_note_xml(credit_note_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount, syntax: Syntax = SYNTAX) -> Response:
    """The credit note's EN 16931 e-invoice: CII (default) or UBL 2.1 CreditNote / Peppol BIS Billing 3.0."""
    return await _download(runtime, tenant, "credit_note", credit_note_id, "ubl" if syntax == "ubl" else "xml", account)


@router.get(
    "/shared/{token}",
    response_class=Response,
    summary="A shared document, by its link (no API key)",
    responses={200: {"content": {"application/pdf": {}, "application/xml": {}, XLSX_MEDIA_TYPE: {}}}, 404: {"description": "shared_document_not_found"}},
)
async def shared_document(token: str, runtime: Runtime[Settings]) -> Response:
    """The one document a shared link names (an invoice's PDF or XML, a comparison report's
    spreadsheet). The token in the path is the credential: no API key is asked for, and an unknown
    token gets the same 404 as a malformed one."""
    found = await resolve(runtime, token)
    with tracer.start_as_current_span("shared_document", attributes={"billing.document_kind": found.owner_kind, "billing.owner_id": found.owner_id}):
        if found.owner_kind == "comparison_report":
            async with runtime.sessions() as session:
                row = await comparison_repo.get(session, found.seller_id, found.owner_id)
            if row is None:
                SHARED_DOWNLOADS.labels(found.owner_kind, found.format, "not_found").inc()
                raise ShareNotFound("no shared document at this link")
            name, content, media_type = report_filename(row), report_xlsx(row), XLSX_MEDIA_TYPE
        elif found.owner_kind == "project_work_statement":
            name, content = await statement_pdf(runtime, found.seller_id, found.owner_id)
            media_type = MEDIA_TYPES["pdf"]
        else:
            fmt: Format = "ubl" if found.format == "ubl" else "xml" if found.format == "xml" else "pdf"
            kind: OwnerKind = "credit_note" if found.owner_kind == "credit_note" else "invoice"
            name, content = await document(runtime, found.seller_id, kind, found.owner_id, fmt)
            media_type = MEDIA_TYPES[fmt]
    SHARED_DOWNLOADS.labels(found.owner_kind, found.format, "served").inc()
    disposition = "inline" if media_type == "application/pdf" else "attachment"
    headers = {
        "Content-Disposition": f'{disposition}; filename="{name}"',
        # The link is the credential: keep it out of referrers, caches shared between users, and indexes.
        "Cache-Control": "private, max-age=3600",
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex",
    }
    return Response(content, media_type=media_type, headers=headers)
