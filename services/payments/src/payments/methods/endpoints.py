"""HTTP: payment methods of a buyer (the billing account the invoices are addressed to). Open to
keys restricted to that one account (the customer portal's): another buyer's account or method id
answers 404, as an unknown one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, Write, own_account
from payments.deps import GatewaysDep
from payments.methods import service
from payments.methods.schemas import DefaultMethodIn, PaymentMethodIn, PaymentMethodList, PaymentMethodOut

router = APIRouter(prefix="/v1", tags=["payment methods"])
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"description": "provider_unavailable: the provider did not answer; send the same request again"}}


@router.post(
    "/accounts/{account_id}/payment-methods",
    dependencies=[Write, ForAccount],
    response_model=PaymentMethodOut,
    status_code=status.HTTP_201_CREATED,
    responses=_UNAVAILABLE,
)
async def post_payment_method(
    account_id: str, body: PaymentMethodIn, tenant: Tenant, runtime: Runtime, gateways: GatewaysDep, response: Response, account: OwnAccount
) -> PaymentMethodOut:
    own_account(account, account_id)
    method, created = await service.add_method(runtime, gateways, tenant, account_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return method


@router.get("/accounts/{account_id}/payment-methods", dependencies=[Read, ForAccount], response_model=PaymentMethodList)
async def list_payment_methods(account_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> PaymentMethodList:
    """The buyer's methods, removed ones left out."""
    own_account(account, account_id)
    async with runtime.sessions() as session:
        items = await service.list_methods(session, tenant, account_id)
    return PaymentMethodList(items=items, limit=len(items), next_cursor=None)


@router.get("/accounts/{account_id}/payment-methods/{method_id}", dependencies=[Read, ForAccount], response_model=PaymentMethodOut)
async def get_payment_method(account_id: str, method_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> PaymentMethodOut:
    own_account(account, account_id)
    async with runtime.sessions() as session:
        return await service.get_method(session, tenant, account_id, method_id)


@router.post(
    "/accounts/{account_id}/payment-methods/{method_id}/confirm", dependencies=[Write, ForAccount], response_model=PaymentMethodOut, responses=_UNAVAILABLE
)
async def confirm_payment_method(
    account_id: str, method_id: str, tenant: Tenant, runtime: Runtime, gateways: GatewaysDep, account: OwnAccount
) -> PaymentMethodOut:
    """The buyer is back from the provider's hosted page: read the setup's outcome from the
    provider and apply it (what its webhook would). Asking again answers the same."""
    own_account(account, account_id)
    return await service.confirm_method(runtime, gateways, tenant, account_id, method_id)


@router.delete("/accounts/{account_id}/payment-methods/{method_id}", dependencies=[Write, ForAccount], response_model=PaymentMethodOut, responses=_UNAVAILABLE)
async def delete_payment_method(
    account_id: str, method_id: str, tenant: Tenant, runtime: Runtime, gateways: GatewaysDep, account: OwnAccount
) -> PaymentMethodOut:
    """Remove a method: detached at Stripe or its mandate cancelled at GoCardless; collected from
    no more. Removing it again answers the same."""
    own_account(account, account_id)
    return await service.remove_method(runtime, gateways, tenant, account_id, method_id)


@router.put("/accounts/{account_id}/default-payment-method", dependencies=[Write, ForAccount], response_model=PaymentMethodOut)
async def put_default_payment_method(account_id: str, body: DefaultMethodIn, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> PaymentMethodOut:
    """Choose the method collection uses (an active card or mandate); 409 `payment_method_not_active`."""
    own_account(account, account_id)
    return await service.set_default(runtime, tenant, account_id, body.method_id)
