"""Sellers close a period (a bill run), see an account's charges so far, and partners see their margin."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Response

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, Write, own_account
from rating.billrun import service
from rating.billrun.schemas import BillRunIn, BillRunOut, BillRunPage, ChargesOut, MarginOut
from rating.config import Settings
from rating.period import Period

router = APIRouter(prefix="/v1", tags=["bill runs"])


class Tier(StrEnum):
    retail = "retail"
    wholesale = "wholesale"


def _distributor(runtime: Runtime[Settings]) -> str | None:
    return runtime.settings.distributor_id


@router.post(
    "/bill-runs", dependencies=[Write], response_model=BillRunOut, status_code=201, responses={200: {"model": BillRunOut, "description": "Already run"}}
)
async def post_bill_run(body: BillRunIn, tenant: Tenant, runtime: Runtime[Settings], response: Response) -> BillRunOut:
    """Run now: close an ended period for the caller (the distributor's run is the wholesale one)."""
    Period.parse(body.period)
    async with runtime.transaction() as session:
        run = await service.close_period(runtime, session, tenant, body.period, _distributor(runtime))
    if not run.created:
        response.status_code = 200
    return run


@router.get("/bill-runs", dependencies=[Read], response_model=BillRunPage)
async def list_bill_runs(
    tenant: Tenant,
    runtime: Runtime[Settings],
    period_from: str | None = Query(default=None, max_length=16, description="Only runs of this month (YYYY-MM) or later."),
    period_to: str | None = Query(default=None, max_length=16, description="Only runs of this month (YYYY-MM) or earlier."),
    tier: Annotated[Tier | None, Query(description="retail (a partner's runs) or wholesale (the distributor's).")] = None,
    cursor: str | None = Query(default=None, max_length=512),
    limit: int = Query(default=50, ge=1, le=200),
) -> BillRunPage:
    """The caller's bill runs, newest period first."""
    for label in (period_from, period_to):
        if label is not None:
            Period.parse(label)
    async with runtime.sessions() as session:
        return await service.list_bill_runs(
            session,
            tenant,
            period_from=period_from,
            period_to=period_to,
            tier=tier.value if tier is not None else None,
            cursor=cursor,
            limit=limit,
        )


@router.get("/bill-runs/{bill_run_id}", dependencies=[Read], response_model=BillRunOut)
async def get_bill_run(bill_run_id: str, tenant: Tenant, runtime: Runtime[Settings]) -> BillRunOut:
    async with runtime.sessions() as session:
        return await service.get_bill_run(session, tenant, bill_run_id)


@router.get("/accounts/{account_id}/charges", dependencies=[Read, ForAccount], response_model=ChargesOut)
async def get_charges(account_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount, period: str | None = None) -> ChargesOut:
    """Live spend: the account's charges in `period` (default: the current month) as rated now."""
    own_account(account, account_id)
    if period is not None:
        Period.parse(period)
    async with runtime.sessions() as session:
        return await service.current_charges(session, tenant, _distributor(runtime), account_id, period, runtime.clock.now())


@router.get("/margins", dependencies=[Read], response_model=MarginOut)
async def get_margins(period: str, tenant: Tenant, runtime: Runtime[Settings]) -> MarginOut:
    """The caller's margin for a period: retail − wholesale by end customer and product."""
    Period.parse(period)
    async with runtime.sessions() as session:
        return await service.margin_report(session, tenant, _distributor(runtime), period)
