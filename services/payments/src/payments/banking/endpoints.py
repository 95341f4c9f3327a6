"""Finance HTTP: import bank statements, see what did not match."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from billing_runtime.api import Read, Runtime, Tenant, Write, page
from payments.banking import service
from payments.banking.schemas import StatementOut, UnmatchedPage

router = APIRouter(prefix="/v1", tags=["bank statements"])


@router.post("/bank-statements", dependencies=[Write], response_model=StatementOut, status_code=status.HTTP_201_CREATED)
async def post_statement(request: Request, tenant: Tenant, runtime: Runtime, response: Response, format: str | None = None) -> StatementOut:
    """The statement file as the body (camt.053 XML or MT940 text); `format` if not recognisable."""
    data = await request.body()
    async with runtime.transaction() as session:
        result, created = await service.import_statement(runtime, session, tenant, data, format)
    if not created:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/bank-statements/unmatched", dependencies=[Read], response_model=UnmatchedPage)
async def list_unmatched(tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        items = await service.unmatched_lines(session, tenant)
    return page([i.model_dump(mode="json") for i in items], len(items), None)
