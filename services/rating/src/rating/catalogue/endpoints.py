"""Sellers manage their catalogue, their dated price list and their billing profile."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from billing_runtime.api import Read, Runtime, Tenant, Write
from rating.catalogue import ordercheck, service
from rating.catalogue import repository as repo
from rating.catalogue.schemas import (
    CATEGORIES,
    PRODUCT_CODE,
    CategoryList,
    CategoryOut,
    MarkupIn,
    OrderCheckIn,
    PriceIn,
    PriceList,
    PriceOut,
    PricingOut,
    ProductIn,
    ProductOut,
    ProductPage,
    SellerIn,
    SellerOut,
)
from rating.config import Settings
from rating.errors import SellerNotConfigured

router = APIRouter(prefix="/v1", tags=["catalogue"])
ProductCode = Annotated[str, Path(pattern=PRODUCT_CODE)]


def _distributor(runtime: Runtime[Settings]) -> str | None:
    return runtime.settings.distributor_id


@router.put("/products/{code}", dependencies=[Write], response_model=ProductOut)
async def put_product(code: ProductCode, body: ProductIn, tenant: Tenant, runtime: Runtime[Settings]) -> ProductOut:
    async with runtime.transaction() as session:
        return await service.put_product(runtime, session, tenant, _distributor(runtime), code, body)


@router.get("/products", dependencies=[Read], response_model=ProductPage)
async def list_products(tenant: Tenant, runtime: Runtime[Settings], after: str | None = None, limit: int = Query(default=100, ge=1, le=1000)) -> ProductPage:
    async with runtime.sessions() as session:
        rows = await repo.list_products(session, tenant, after, limit + 1)
    items = [service.to_out(r) for r in rows[:limit]]
    return ProductPage(items=items, limit=limit, next_cursor=items[-1].code if len(rows) > limit else None)


@router.get("/products/{code}", dependencies=[Read], response_model=ProductOut)
async def get_product(code: str, tenant: Tenant, runtime: Runtime[Settings]) -> ProductOut:
    async with runtime.sessions() as session:
        return await service.get_product(session, tenant, code)


@router.get("/categories", dependencies=[Read], response_model=CategoryList)
async def list_categories() -> CategoryList:
    """The invoice categories of seed 001, for products and the partner invoice's totals."""
    return CategoryList(items=[CategoryOut(name=name, examples=examples) for name, examples in CATEGORIES])


@router.put("/price-list/{code}", dependencies=[Write], response_model=PriceOut)
async def put_price(code: ProductCode, body: PriceIn, tenant: Tenant, runtime: Runtime[Settings]) -> PriceOut:
    """One dated entry of the caller's price list (the distributor's is the wholesale list)."""
    async with runtime.transaction() as session:
        return await service.put_price(runtime, session, tenant, _distributor(runtime), code, body)


@router.put("/markup-rule", dependencies=[Write], response_model=PriceOut)
async def put_markup(body: MarkupIn, tenant: Tenant, runtime: Runtime[Settings]) -> PriceOut:
    """A partner's retail prices as a markup over wholesale, from a date."""
    async with runtime.transaction() as session:
        return await service.put_markup(runtime, session, tenant, _distributor(runtime), body)


@router.get("/price-list", dependencies=[Read], response_model=PriceList)
async def list_prices(tenant: Tenant, runtime: Runtime[Settings], product_code: str | None = None) -> PriceList:
    async with runtime.sessions() as session:
        rows = await repo.prices_of(session, [tenant], product_code)
    return PriceList(items=[service.price_out(r) for r in rows])


@router.put("/seller", dependencies=[Write], response_model=SellerOut)
async def put_seller(body: SellerIn, tenant: Tenant, runtime: Runtime[Settings]) -> SellerOut:
    """The caller's currency, country (business days), time zone (periods) and issue day."""
    async with runtime.transaction() as session:
        return await service.put_seller(runtime, session, tenant, _distributor(runtime), body)


@router.get("/seller", dependencies=[Read], response_model=SellerOut)
async def get_seller(tenant: Tenant, runtime: Runtime[Settings]) -> SellerOut:
    async with runtime.sessions() as session:
        row = await repo.get_seller(session, tenant)
    if row is None:
        raise SellerNotConfigured("no billing profile yet: PUT /v1/seller")
    return service.seller_out(row, _distributor(runtime))


@router.post("/order-checks", dependencies=[Read], response_model=PricingOut)
async def post_order_check(body: OrderCheckIn, tenant: Tenant, runtime: Runtime[Settings]) -> PricingOut:
    """Whether an order can be billed: its product has a price in the buyer's currency for its
    first period (200), else 422 `no_price_in_currency`. Nothing is stored."""
    async with runtime.sessions() as session:
        return await ordercheck.check_order(session, tenant, _distributor(runtime), body)
