"""Finance HTTP: record a bank transfer received, read payments back."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, Write, own_account
from payments.payment import service
from payments.payment.schemas import BankTransferIn, PaymentOut, PaymentPage

router = APIRouter(prefix="/v1", tags=["payments"])


@router.post("/payments", dependencies=[Write], response_model=PaymentOut, status_code=status.HTTP_201_CREATED)
async def post_payment(body: BankTransferIn, tenant: Tenant, runtime: Runtime, response: Response) -> PaymentOut:
    async with runtime.transaction() as session:
        payment, created = await service.record_bank_transfer(runtime, session, tenant, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return payment


@router.get("/payments", dependencies=[Read, ForAccount], response_model=PaymentPage)
async def list_payments(
    tenant: Tenant,
    runtime: Runtime,
    account: OwnAccount,
    invoice_id: str | None = None,
    account_id: str | None = Query(default=None, description="Only this buyer's payments (a key restricted to one account: its own, always)."),
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = None,
) -> PaymentPage:
    buyer = own_account(account, account_id)
    async with runtime.sessions() as session:
        items, next_cursor = await service.list_payments(session, tenant, invoice_id=invoice_id, account_id=buyer, limit=limit, cursor=cursor)
    return PaymentPage(items=items, limit=limit, next_cursor=next_cursor)


@router.get("/payments/{payment_id}", dependencies=[Read, ForAccount], response_model=PaymentOut)
async def get_payment(payment_id: str, tenant: Tenant, runtime: Runtime, account: OwnAccount) -> PaymentOut:
    """One payment: its receipt (a key restricted to one account: only that buyer's; another's is a 404)."""
    async with runtime.sessions() as session:
        return await service.get_payment(session, tenant, payment_id, account_id=account)
