"""Project-work statements over HTTP: the seller's statements, and each as a PDF."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from billing_events.money import money_str
from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant
from invoicing.config import Settings
from invoicing.projectwork import service
from invoicing.projectwork.schemas import StatementList, StatementOut

router = APIRouter(prefix="/v1", tags=["project-work statements"])


def statement_json(row: Any) -> dict[str, Any]:
    c = row.currency
    return {
        "id": row.statement_id,
        "number": row.number,
        "entry_id": row.entry_id,
        "buyer_account_id": row.buyer_account_id,
        "issued_on": row.issued_on.isoformat(),
        "tier": row.tier,
        "end_customer_id": row.end_customer_id,
        "end_customer_name": row.end_customer_name,
        "product_code": row.product_code,
        "description": row.description,
        "performed_on": row.performed_on.isoformat(),
        "quantity": format(row.quantity, "f"),
        "unit_price": format(row.unit_price, "f"),
        "amount": money_str(row.amount, c),
        "amount_due": money_str(0, c),
        "currency": c,
        "billed_with_period_start": row.billed_with_period_start.isoformat(),
        "billed_with_period_end": row.billed_with_period_end.isoformat(),
    }


@router.get("/project-work-statements", dependencies=[Read, ForAccount], response_model=StatementList)
async def list_statements(tenant: Tenant, runtime: Runtime, account: OwnAccount, buyer_account_id: str | None = None) -> dict[str, Any]:
    async with runtime.sessions() as session:
        rows = await service.list_statements(session, tenant, account or buyer_account_id)
    return {"items": [statement_json(r) for r in rows]}


@router.get("/project-work-statements/{statement_id}", dependencies=[Read, ForAccount], response_model=StatementOut)
async def get_statement(statement_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await service.existing_statement(session, tenant, statement_id, buyer_account_id=account)
    return statement_json(row)


@router.get(
    "/project-work-statements/{statement_id}/pdf",
    dependencies=[Read, ForAccount],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}, "description": "The statement as a PDF."}},
)
async def statement_pdf(statement_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> Response:
    name, content = await service.statement_pdf(runtime, tenant, statement_id, buyer_account_id=account)
    return Response(content, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{name}"'})
