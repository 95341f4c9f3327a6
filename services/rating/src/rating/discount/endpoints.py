"""Sellers grant discounts, each under its own id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from billing_runtime.api import Read, Runtime, Tenant, Write
from rating.catalogue.schemas import PRODUCT_CODE
from rating.config import Settings
from rating.discount import service
from rating.discount.schemas import DiscountIn, DiscountList, DiscountOut

router = APIRouter(prefix="/v1/discounts", tags=["discounts"])


@router.put("/{discount_id}", dependencies=[Write], response_model=DiscountOut)
async def put_discount(discount_id: Annotated[str, Path(pattern=PRODUCT_CODE)], body: DiscountIn, tenant: Tenant, runtime: Runtime[Settings]) -> DiscountOut:
    async with runtime.transaction() as session:
        return await service.put_discount(runtime, session, tenant, runtime.settings.distributor_id, discount_id, body)


@router.get("", dependencies=[Read], response_model=DiscountList)
async def list_discounts(tenant: Tenant, runtime: Runtime[Settings]) -> DiscountList:
    async with runtime.sessions() as session:
        return DiscountList(items=await service.list_discounts(session, tenant))
