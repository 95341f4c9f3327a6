"""Partner-facing HTTP: the seller's brand."""

from __future__ import annotations

from fastapi import APIRouter

from billing_runtime.api import ForAccount, Read, Runtime, Tenant, Write
from notify.brand import service
from notify.brand.schemas import BrandIn, BrandOut

router = APIRouter(prefix="/v1", tags=["brand"])


@router.get("/brand", dependencies=[Read, ForAccount], response_model=BrandOut)
async def get_brand(tenant: Tenant, runtime: Runtime) -> BrandOut:
    """The seller's brand (also to a key restricted to one of its accounts: the portal shows it)."""
    async with runtime.sessions() as session:
        return await service.get_brand(session, tenant)


@router.put("/brand", dependencies=[Write], response_model=BrandOut)
async def put_brand(body: BrandIn, tenant: Tenant, runtime: Runtime) -> BrandOut:
    async with runtime.transaction() as session:
        return await service.put_brand(session, tenant, body, runtime.clock.now())
