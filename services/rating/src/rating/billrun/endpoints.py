"""Sellers close a period (a bill run), see an account's charges so far, and partners see their margin."""

from __future__ import annotations

from fastapi import APIRouter, Response

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, Write, own_account
from rating.billrun import service
from rating.billrun.schemas import BillRunIn, BillRunOut, ChargesOut, MarginOut
from rating.period import Period

router = APIRouter(prefix="/v1", tags=["bill runs"])


def _distributor(runtime: Runtime) -> str | None:
    return getattr(runtime.settings, "distributor_id", None)


@router.post(
    "/bill-runs", dependencies=[Write], response_model=BillRunOut, status_code=201, responses={200: {"model": BillRunOut, "description": "Already run"}}
)
async def post_bill_run(body: BillRunIn, tenant: Tenant, runtime: Runtime, response: Response) -> BillRunOut:
    """Run now: close an ended period for the caller (the distributor's run is the wholesale one)."""
    Period.parse(body.period)
    async with runtime.transaction() as session:
        run = await service.close_period(runtime, session, tenant, body.period, _distributor(runtime))
    if not run.created:
        response.status_code = 200
    return run


@router.get("/bill-runs/{bill_run_id}", dependencies=[Read], response_model=BillRunOut)
async def get_bill_run(bill_run_id: str, tenant: Tenant, runtime: Runtime) -> BillRunOut:
    async with runtime.sessions() as session:
        return await service.get_bill_run(session, tenant, bill_run_id)


@router.get("/accounts/{account_id}/charges", dependencies=[Read, ForAccount], response_model=ChargesOut)
async def get_charges(account_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount, period: str | None = None) -> ChargesOut:
    """Live spend: the account's charges in `period` (default: the current month) as rated now."""
    own_account(account, account_id)
    if period is not None:
        Period.parse(period)
    async with runtime.sessions() as session:
        return await service.current_charges(session, tenant, _distributor(runtime), account_id, period, runtime.clock.now())


@router.get("/margins", dependencies=[Read], response_model=MarginOut)
async def get_margins(period: str, tenant: Tenant, runtime: Runtime) -> MarginOut:
    """The caller's margin for a period: retail − wholesale by end customer and product."""
    Period.parse(period)
    async with runtime.sessions() as session:
        return await service.margin_report(session, tenant, _distributor(runtime), period)
