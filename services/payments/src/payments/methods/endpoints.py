"""Partner HTTP: payment methods of a buyer (the billing account the invoices are addressed to)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from billing_runtime.api import Read, Runtime, Tenant, Write, page
from payments.deps import GatewaysDep
from payments.methods import service
from payments.methods.schemas import PaymentMethodIn, PaymentMethodOut

router = APIRouter(prefix="/v1", tags=["payment methods"])


@router.post(
    "/accounts/{account_id}/payment-methods",
    dependencies=[Write],
    response_model=PaymentMethodOut,
    status_code=status.HTTP_201_CREATED,
    responses={503: {"description": "provider_unavailable: the provider did not answer; send the same request again"}},
)
async def post_payment_method(
    account_id: str, body: PaymentMethodIn, tenant: Tenant, runtime: Runtime, gateways: GatewaysDep, response: Response
) -> PaymentMethodOut:
    method, created = await service.add_method(runtime, gateways, tenant, account_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return method


@router.get("/accounts/{account_id}/payment-methods", dependencies=[Read])
async def list_payment_methods(account_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    async with runtime.sessions() as session:
        items = await service.list_methods(session, tenant, account_id)
    return page([i.model_dump(mode="json") for i in items], len(items), None)
