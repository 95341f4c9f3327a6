"""Seller HTTP: the calling tenant reads and replaces its own invoicing settings."""

from __future__ import annotations

from fastapi import APIRouter

from billing_runtime.api import Read, Runtime, Tenant, Write
from invoicing.seller import service
from invoicing.seller.schemas import SellerSettingsIn, SellerSettingsOut

router = APIRouter(prefix="/v1", tags=["seller"])


@router.get("/seller", dependencies=[Read], response_model=SellerSettingsOut)
async def get_seller(tenant: Tenant, runtime: Runtime) -> SellerSettingsOut:
    async with runtime.sessions() as session:
        seller = await service.get_seller(runtime, session, tenant)
    return seller.out()


@router.put("/seller", dependencies=[Write], response_model=SellerSettingsOut)
async def put_seller(body: SellerSettingsIn, tenant: Tenant, runtime: Runtime) -> SellerSettingsOut:
    async with runtime.transaction() as session:
        seller = await service.put_seller(runtime, session, tenant, body)
    return seller.out()
