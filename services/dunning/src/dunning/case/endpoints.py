"""HTTP: a seller's dunning cases, and an account's standing with that seller."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, own_account
from dunning.case import service
from dunning.case.schemas import CasePage, StandingOut

router = APIRouter(prefix="/v1", tags=["cases"])


@router.get("/cases", dependencies=[Read], response_model=CasePage)
async def list_cases(
    tenant: Tenant,
    runtime: Runtime,
    status: Literal["open", "closed"] | None = None,
    account_id: str | None = None,
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = None,
) -> CasePage:
    async with runtime.sessions() as session:
        items, next_cursor = await service.list_cases(session, tenant, runtime.clock.today(), status=status, account_id=account_id, limit=limit, cursor=cursor)
    return CasePage(items=items, limit=limit, next_cursor=next_cursor)


@router.get("/accounts/{account_id}/standing", dependencies=[Read, ForAccount], response_model=StandingOut)
async def get_standing(account_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> StandingOut:
    own_account(account, account_id)
    async with runtime.sessions() as session:
        return await service.account_standing(session, tenant, account_id, runtime.clock.today())
