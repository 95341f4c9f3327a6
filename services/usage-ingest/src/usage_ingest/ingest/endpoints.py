"""Partner-facing HTTP: batches of customers, orders, usage and quantity counts; read-back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.api import Admin, ForAccount, OwnAccount, Read, Runtime, Tenant, Write, own_account, page
from billing_runtime.conventions import record_audit_in
from billing_runtime.errors import NotFound
from usage_ingest.ingest import changes, history, profile, service
from usage_ingest.ingest import repository as repo
from usage_ingest.ingest.limits import take_records
from usage_ingest.ingest.schemas import (
    AccountRef,
    Batch,
    BatchResult,
    BillingProfileOut,
    BillingProfileSaved,
    CustomerOut,
    CustomerPage,
    OrderChangeOut,
    OrderOut,
    UsageOut,
    history_item_schema,
    parse_batch,
)

router = APIRouter(prefix="/v1", tags=["ingest"])


@router.post("/customers", dependencies=[Write], response_model=BatchResult)
async def post_customers(batch: Batch, tenant: Tenant, runtime: Runtime) -> BatchResult:
    async with runtime.transaction() as session:
        return await service.upsert_customers(runtime, session, tenant, batch.records)


@router.post("/orders/{order_id}/changes", dependencies=[Write], response_model=OrderChangeOut)
async def post_order_change(order_id: str, body: dict[str, Any], tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """A new quantity for the subscription this order opened: `{"id", "quantity", "effective_date"?}`."""
    async with runtime.transaction() as session:
        return await changes.change_order(runtime, session, tenant, order_id, body, "quantity")


@router.post("/orders/{order_id}/cancellation", dependencies=[Write], response_model=OrderChangeOut)
async def post_cancellation(order_id: str, body: dict[str, Any], tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """Cancel the subscription this order opened: `{"id", "effective_date"?}` (the request date is today)."""
    async with runtime.transaction() as session:
        return await changes.change_order(runtime, session, tenant, order_id, body, "cancellation")


# Create-only batches: the body is read and validated here in one pass (not by FastAPI, which
# would parse and copy it twice more), and the answer is serialised once.
_BATCH_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": Batch.model_json_schema()}}}}
_ATOMIC = Query(default=False, description="Refuse the whole batch (422 `batch_rejected`, nothing written) if any record is rejected or conflicts.")


@router.post("/orders", dependencies=[Write], response_model=BatchResult, openapi_extra=_BATCH_BODY)
async def post_orders(request: Request, tenant: Tenant, runtime: Runtime, atomic: bool = _ATOMIC) -> Response:
    return await _create_only(request, tenant, runtime, service.ORDERS, atomic)


@router.post("/usage", dependencies=[Write], response_model=BatchResult, openapi_extra=_BATCH_BODY)
async def post_usage(request: Request, tenant: Tenant, runtime: Runtime, atomic: bool = _ATOMIC) -> Response:
    return await _create_only(request, tenant, runtime, service.USAGE, atomic)


@router.post("/quantities", dependencies=[Write], response_model=BatchResult, openapi_extra=_BATCH_BODY)
async def post_quantities(request: Request, tenant: Tenant, runtime: Runtime, atomic: bool = _ATOMIC) -> Response:
    return await _create_only(request, tenant, runtime, service.QUANTITIES, atomic)


_HISTORY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["records"],
                    "additionalProperties": False,
                    "properties": {"records": {"type": "array", "minItems": 1, "maxItems": 1000, "items": history_item_schema()}},
                }
            }
        },
    }
}


@router.post("/admin/order-history", dependencies=[Admin], response_model=BatchResult, openapi_extra=_HISTORY_BODY)
async def post_order_history(request: Request, tenant: Tenant, runtime: Runtime) -> Response:
    """A partner's history from its previous system: orders, quantity changes and cancellations, each
    `{"kind": "order" | "change" | "cancellation", "id", "requested_at", ...}`, in the order they
    happened. All or nothing: 422 `batch_rejected` (each refused item's `code`, e.g. `period_closed`)."""
    return await _post_batch(request, tenant, runtime, "history", lambda session, records: history.import_history(runtime, session, tenant, records))


async def _create_only(request: Request, tenant: Tenant, runtime: Runtime, kind: service.Kind, atomic: bool) -> Response:
    return await _post_batch(
        request, tenant, runtime, kind.name, lambda session, records: service.ingest_records(runtime, session, tenant, kind, records, atomic=atomic)
    )


async def _post_batch(
    request: Request, tenant: Tenant, runtime: Runtime, kind: str, ingest: Callable[[AsyncSession, list[Any]], Awaitable[service.Outcome]]
) -> Response:
    """A posted batch of `kind` (its records' limit: `take_records`), ingested and answered."""
    body = await request.body()
    records = parse_batch(body)
    refused = take_records(request, tenant, len(records), kind)
    if refused is not None:
        return refused
    # In the request's own transaction (no savepoint): any failure here fails the request whole.
    async with runtime.transaction(savepoint=False) as session:
        outcome = await ingest(session, records)
        answer = outcome.body()
        # In the same transaction as the records: the audit row commits with what it records.
        await record_audit_in(await session.connection(), request, request_json=body, response_json=answer)
    return Response(answer, media_type="application/json")


def _public(row: Any, drop: tuple[str, ...] = ("tenant", "content_hash")) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in drop:
        data.pop(key, None)
    return data


@router.get("/customers", dependencies=[Read], response_model=CustomerPage)
async def list_customers(tenant: Tenant, runtime: Runtime, after: str | None = None, limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    async with runtime.sessions() as session:
        rows = await repo.list_customers(session, tenant, after, limit + 1)
    items = [_public(r) for r in rows[:limit]]
    return page(items, limit, items[-1]["external_id"] if len(rows) > limit else None)


@router.get("/customers/{customer_id}", dependencies=[Read], response_model=CustomerOut)
async def get_customer(customer_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await repo.get_customer(session, tenant, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id!r}", code="customer_not_found")
    return _public(row)


@router.get("/accounts/by-customer/{customer_id}", dependencies=[Read], response_model=AccountRef)
async def get_account_by_customer(customer_id: str, tenant: Tenant, runtime: Runtime) -> AccountRef:
    """The billing account of one of the partner's customers, by the partner's own id: the
    `account_id` every other service's routes take (they also take `/v1/accounts/by-customer/{customer_id}/…`
    and `?customer_id=` themselves). 404 `customer_not_found` for a customer this tenant does not have."""
    async with runtime.sessions() as session:
        row = await repo.get_customer(session, tenant, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id!r}", code="customer_not_found", field="customer_id")
    return AccountRef(customer_id=row.external_id, account_id=row.account_id, name=row.name, revision=row.revision)


@router.get("/orders/{order_id}", dependencies=[Read], response_model=OrderOut)
async def get_order(order_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await repo.get_row(session, repo.ORDER, "order_id", tenant, order_id)
    if row is None:
        raise NotFound(f"no order {order_id!r}", code="order_not_found")
    return _public(row)


@router.get("/usage/{record_id}", dependencies=[Read], response_model=UsageOut)
async def get_usage(record_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        row = await repo.get_row(session, repo.USAGE, "record_id", tenant, record_id)
    if row is None:
        raise NotFound(f"no usage record {record_id!r}", code="usage_not_found")
    return _public(row)


@router.get("/accounts/{account_id}/billing-profile", dependencies=[Read, ForAccount], response_model=BillingProfileOut)
async def get_billing_profile(account_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> dict[str, Any]:
    """The customer's billing profile, by its billing account (a key restricted to one account: only its own)."""
    own_account(account, account_id)
    async with runtime.sessions() as session:
        return await profile.get_profile(session, tenant, account_id)


@router.put("/accounts/{account_id}/billing-profile", dependencies=[Write, ForAccount], response_model=BillingProfileSaved)
async def put_billing_profile(account_id: str, body: profile.BillingProfileIn, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> dict[str, Any]:
    """The customer keeps its own billing profile (contact, billing email, address, VAT id): a new
    revision of the customer and `CustomerUpserted`, unless nothing changed (`changed: false`).
    422 `invalid_email`, `invalid_phone`, `invalid_vat_id`, `incomplete_address`, `validation_error`."""
    own_account(account, account_id)
    async with runtime.transaction() as session:
        return await profile.save_profile(runtime, session, tenant, account_id, body)
