"""Comparison report HTTP: the seller's reports per buyer and period, as JSON and as XLSX. A key
restricted to one billing account (the portal's statement key of a partner) sees the reports about
that account only: another's is a 404, as for a report that does not exist."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, own_account
from invoicing.comparison import repository as repo
from invoicing.comparison.schemas import ComparisonReportList, ComparisonReportOut
from invoicing.comparison.service import XLSX_MEDIA_TYPE, existing_report, report_filename, report_json, report_xlsx
from invoicing.invoice.endpoints import month_bounds

router = APIRouter(prefix="/v1", tags=["comparison reports"])


@router.get("/comparison-reports", dependencies=[Read, ForAccount], response_model=ComparisonReportList)
async def list_reports(
    tenant: Tenant,
    runtime: Runtime,
    account: OwnAccount,
    buyer_account_id: str | None = None,
    period: str | None = Query(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$"),
) -> dict[str, Any]:
    buyer_account_id = own_account(account, buyer_account_id)
    period_from, period_until = month_bounds(period) if period else (None, None)
    async with runtime.sessions() as session:
        rows = await repo.list_reports(session, tenant, buyer_account_id=buyer_account_id, period_from=period_from, period_until=period_until)
    return {"items": [report_json(r) for r in rows]}


@router.get("/comparison-reports/{report_id}", dependencies=[Read, ForAccount], response_model=ComparisonReportOut)
async def get_report(report_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await existing_report(session, tenant, report_id, buyer_account_id=account)
    return report_json(row)


@router.get(
    "/comparison-reports/{report_id}/xlsx",
    dependencies=[Read, ForAccount],
    response_class=Response,
    responses={200: {"content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}, "description": "The report as a spreadsheet."}},
)
async def get_report_xlsx(report_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> Response:
    async with runtime.sessions() as session:
        row = await existing_report(session, tenant, report_id, buyer_account_id=account)
    return Response(report_xlsx(row), media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": f'attachment; filename="{report_filename(row)}"'})
