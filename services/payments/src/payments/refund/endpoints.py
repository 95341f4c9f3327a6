"""Partner HTTP: the bank accounts a SEPA refund file pays from (the seller's) and to (a buyer's), and the files."""

from __future__ import annotations

from fastapi import APIRouter, Response
from stdnum import bic as bic_number
from stdnum import iban as iban_number

from billing_runtime.api import Admin, Read, Runtime, Tenant, Write
from billing_runtime.errors import BillingError, NotFound
from payments.refund import repository as repo
from payments.refund.schemas import BankAccountIn, BankAccountOut
from payments.refund.service import SELLER

router = APIRouter(prefix="/v1", tags=["refunds"])


class InvalidBankAccount(BillingError):
    status_code = 422
    code = "invalid_bank_account"


async def _put(runtime: Runtime, tenant: str, owner: str, body: BankAccountIn) -> BankAccountOut:
    if not iban_number.is_valid(body.iban):
        raise InvalidBankAccount(f"{body.iban!r} is not a valid IBAN", field="iban")
    if body.bic is not None and not bic_number.is_valid(body.bic):
        raise InvalidBankAccount(f"{body.bic!r} is not a valid BIC", field="bic")
    row = {
        "tenant": tenant,
        "owner": owner,
        "name": body.name,
        "iban": iban_number.compact(body.iban),
        "bic": bic_number.compact(body.bic) if body.bic else None,
        "updated_at": runtime.clock.now(),
    }
    async with runtime.transaction() as session:
        await repo.put_bank_account(session, row)
    return BankAccountOut(owner=owner, name=row["name"], iban=row["iban"], bic=row["bic"])


async def _get(runtime: Runtime, tenant: str, owner: str) -> BankAccountOut:
    async with runtime.sessions() as session:
        row = await repo.get_bank_account(session, tenant, owner)
    if row is None:
        raise NotFound("no bank account is set", code="bank_account_not_found")
    return BankAccountOut(owner=owner, name=row.name, iban=row.iban, bic=row.bic)


@router.put("/bank-account", dependencies=[Admin], response_model=BankAccountOut)
async def put_seller_account(body: BankAccountIn, tenant: Tenant, runtime: Runtime) -> BankAccountOut:
    """The seller's own account: the debtor of its SEPA refund files."""
    return await _put(runtime, tenant, SELLER, body)


@router.get("/bank-account", dependencies=[Read], response_model=BankAccountOut)
async def get_seller_account(tenant: Tenant, runtime: Runtime) -> BankAccountOut:
    return await _get(runtime, tenant, SELLER)


@router.put("/accounts/{account_id}/bank-account", dependencies=[Write], response_model=BankAccountOut)
async def put_buyer_account(account_id: str, body: BankAccountIn, tenant: Tenant, runtime: Runtime) -> BankAccountOut:
    """Where a buyer who paid by bank transfer gets its refunds."""
    return await _put(runtime, tenant, account_id, body)


@router.get("/accounts/{account_id}/bank-account", dependencies=[Read], response_model=BankAccountOut)
async def get_buyer_account(account_id: str, tenant: Tenant, runtime: Runtime) -> BankAccountOut:
    return await _get(runtime, tenant, account_id)


@router.get("/refund-files/{file_id}", dependencies=[Read], response_class=Response, responses={200: {"content": {"application/xml": {}}}})
async def get_refund_file(file_id: str, tenant: Tenant, runtime: Runtime) -> Response:
    """A SEPA credit transfer initiation (pain.001.001.03) to upload to the seller's bank."""
    async with runtime.sessions() as session:
        row = await repo.get_refund_file(session, tenant, file_id)
    if row is None:
        raise NotFound(f"no refund file {file_id!r}", code="refund_file_not_found")
    return Response(row.content, media_type="application/xml", headers={"Content-Disposition": f'attachment; filename="refund-{row.message_id}.xml"'})
