"""HTTP: a seller's dunning policy."""

from __future__ import annotations

from fastapi import APIRouter

from billing_runtime.api import Admin, Read, Runtime, Tenant
from dunning.policy import service
from dunning.policy.schemas import PolicyIn, PolicyOut

router = APIRouter(prefix="/v1", tags=["policy"])


@router.get("/dunning-policy", dependencies=[Read], response_model=PolicyOut)
async def get_policy(tenant: Tenant, runtime: Runtime) -> PolicyOut:
    async with runtime.sessions() as session:
        return await service.get_policy(session, tenant)


@router.put("/dunning-policy", dependencies=[Admin], response_model=PolicyOut)
async def put_policy(body: PolicyIn, tenant: Tenant, runtime: Runtime) -> PolicyOut:
    async with runtime.transaction() as session:
        return await service.put_policy(session, tenant, body, runtime.clock.now())
