"""Partner-facing HTTP: webhook endpoints, their secrets and their deliveries."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from billing_runtime.api import Admin, Runtime, Tenant
from billing_runtime.conventions import response_holds_secret
from notify.config import Settings
from notify.webhook import destination, service
from notify.webhook import repository as repo
from notify.webhook.destination import AllowList
from notify.webhook.schemas import EndpointIn, EndpointList, EndpointOut, EndpointWithSecret, RotateIn, WebhookDeliveryOut, WebhookDeliveryPage

router = APIRouter(prefix="/v1", tags=["webhooks"])


@router.post("/webhook-endpoints", dependencies=[Admin], response_model=EndpointWithSecret, status_code=201)
async def create_endpoint(
    body: EndpointIn,
    tenant: Tenant,
    runtime: Runtime[Settings],
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> EndpointWithSecret:
    response_holds_secret(request)
    # Resolved and checked before any transaction opens (the sender checks again at each send).
    await destination.check(body.url, AllowList.parse(runtime.settings.webhook_allowed_destinations), "register")
    async with runtime.transaction() as session:
        endpoint, created = await service.create_endpoint(session, runtime.sealing(), tenant, body, runtime.clock.now(), idempotency_key)
    if not created:
        response.status_code = 200
    return endpoint


@router.get("/webhook-endpoints", dependencies=[Admin], response_model=EndpointList)
async def list_endpoints(tenant: Tenant, runtime: Runtime) -> EndpointList:
    async with runtime.sessions() as session:
        items = await service.list_endpoints(session, tenant)
    return EndpointList(items=items, limit=len(items), next_cursor=None)


@router.get("/webhook-endpoints/{endpoint_id}", dependencies=[Admin], response_model=EndpointOut)
async def get_endpoint(endpoint_id: str, tenant: Tenant, runtime: Runtime) -> EndpointOut:
    async with runtime.sessions() as session:
        return service.endpoint_out(await service.get_endpoint(session, tenant, endpoint_id))


@router.delete("/webhook-endpoints/{endpoint_id}", dependencies=[Admin], status_code=204)
async def delete_endpoint(endpoint_id: str, tenant: Tenant, runtime: Runtime) -> None:
    async with runtime.transaction() as session:
        await service.delete_endpoint(session, tenant, endpoint_id, runtime.clock.now())


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", dependencies=[Admin], response_model=EndpointWithSecret)
async def rotate_secret(endpoint_id: str, tenant: Tenant, runtime: Runtime, request: Request, body: RotateIn | None = None) -> EndpointWithSecret:
    response_holds_secret(request)
    grace = timedelta(seconds=(body or RotateIn()).grace_seconds)
    async with runtime.transaction() as session:
        return await service.rotate_secret(session, runtime.sealing(), tenant, endpoint_id, grace, runtime.clock.now())


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", dependencies=[Admin], response_model=WebhookDeliveryPage)
async def list_deliveries(endpoint_id: str, tenant: Tenant, runtime: Runtime, limit: int = Query(default=50, ge=1, le=500)) -> WebhookDeliveryPage:
    async with runtime.sessions() as session:
        await service.get_endpoint(session, tenant, endpoint_id)
        rows = await repo.deliveries_of(session, tenant, endpoint_id, limit)
    return WebhookDeliveryPage(items=[WebhookDeliveryOut.model_validate(r.model_dump()) for r in rows], limit=limit, next_cursor=None)
