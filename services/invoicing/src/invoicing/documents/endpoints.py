"""Document downloads: the PDF (PDF/A-3 with the Factur-X EN 16931 XML embedded) and the XML alone."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from billing_runtime.api import Runtime, Tenant
from invoicing.documents.service import Format, OwnerKind, document

router = APIRouter(prefix="/v1", tags=["documents"])

MEDIA_TYPES: dict[str, str] = {"pdf": "application/pdf", "xml": "application/xml"}


async def _download(runtime: Runtime, tenant: str, kind: OwnerKind, owner_id: str, fmt: Format) -> Response:
    name, content = await document(runtime, tenant, kind, owner_id, fmt)
    return Response(content, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/invoices/{invoice_id}/pdf", response_class=Response)
async def invoice_pdf(invoice_id: str, tenant: Tenant, runtime: Runtime) -> Response:
    return await _download(runtime, tenant, "invoice", invoice_id, "pdf")


@router.get("/invoices/{invoice_id}/xml", response_class=Response)
async def invoice_xml(invoice_id: str, tenant: Tenant, runtime: Runtime) -> Response:
    return await _download(runtime, tenant, "invoice", invoice_id, "xml")


@router.get("/credit-notes/{credit_note_id}/pdf", response_class=Response)
async def credit_note_pdf(credit_note_id: str, tenant: Tenant, runtime: Runtime) -> Response:
    return await _download(runtime, tenant, "credit_note", credit_note_id, "pdf")


@router.get("/credit-notes/{credit_note_id}/xml", response_class=Response)
async def credit_note_xml(credit_note_id: str, tenant: Tenant, runtime: Runtime) -> Response:
    return await _download(runtime, tenant, "credit_note", credit_note_id, "xml")
