"""Partner-facing HTTP: batches of customers, orders, usage and quantity counts; read-back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from billing_runtime.api import Read, Runtime, Tenant, Write, page
from billing_runtime.errors import NotFound
from usage_ingest.ingest import changes, service
from usage_ingest.ingest import repository as repo
from usage_ingest.ingest.schemas import Batch, BatchResult

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/customers", dependencies=[Write], response_model=BatchResult)
async def post_customers(batch: Batch, tenant: Tenant, runtime: Runtime) -> BatchResult:
    async with runtime.transaction() as session:
        return await service.upsert_customers(runtime, session, tenant, batch.records)


@router.post("/orders", dependencies=[Write], response_model=BatchResult)
async def post_orders(batch: Batch, tenant: Tenant, runtime: Runtime) -> BatchResult:
    async with runtime.transaction() as session:
        return await service.ingest_records(runtime, session, tenant, service.ORDERS, batch.records)


@router.post("/orders/{order_id}/changes", dependencies=[Write])
async def post_order_change(order_id: str, body: dict[str, Any], tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """A new quantity for the subscription this order opened: `{"id", "quantity", "effective_date"?}`."""
    async with runtime.transaction() as session:
        return await changes.change_order(runtime, session, tenant, order_id, body, "quantity")


@router.post("/orders/{order_id}/cancellation", dependencies=[Write])
async def post_cancellation(order_id: str, body: dict[str, Any], tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """Cancel the subscription this order opened: `{"id", "effective_date"?}` (the request date is today)."""
    async with runtime.transaction() as session:
        return await changes.change_order(runtime, session, tenant, order_id, body, "cancellation")


@router.post("/usage", dependencies=[Write], response_model=BatchResult)
async def post_usage(batch: Batch, tenant: Tenant, runtime: Runtime) -> BatchResult:
    async with runtime.transaction() as session:
        return await service.ingest_records(runtime, session, tenant, service.USAGE, batch.records)


@router.post("/quantities", dependencies=[Write], response_model=BatchResult)
async def post_quantities(batch: Batch, tenant: Tenant, runtime: Runtime) -> BatchResult:
    async with runtime.transaction() as session:
        return await service.ingest_records(runtime, session, tenant, service.QUANTITIES, batch.records)


def _public(row: Any, drop: tuple[str, ...] = ("tenant", "content_hash")) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in drop:
        data.pop(key, None)
    return data


@router.get("/customers", dependencies=[Read])
async def list_customers(tenant: Tenant, runtime: Runtime, after: str | None = None, limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    async with runtime.sessions() as session:
        rows = await repo.list_customers(session, tenant, after, limit + 1)
    items = [_public(r) for r in rows[:limit]]
    return page(items, limit, items[-1]["external_id"] if len(rows) > limit else None)


@router.get("/customers/{customer_id}", dependencies=[Read])
async def get_customer(customer_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await repo.get_customer(session, tenant, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id!r}", code="customer_not_found")
    return _public(row)


@router.get("/orders/{order_id}", dependencies=[Read])
async def get_order(order_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await repo.get_row(session, repo.ORDER, "order_id", tenant, order_id)
    if row is None:
        raise NotFound(f"no order {order_id!r}", code="order_not_found")
    return _public(row)


@router.get("/usage/{record_id}", dependencies=[Read])
async def get_usage(record_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await repo.get_row(session, repo.USAGE, "record_id", tenant, record_id)
    if row is None:
        raise NotFound(f"no usage record {record_id!r}", code="usage_not_found")
    return _public(row)
