"""Partner HTTP: collection attempts of an invoice, a buyer's credit, the seller's collection settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from billing_events.money import money_str
from billing_runtime.api import Admin, Read, Runtime, Tenant, page
from payments.collection import repository as repo
from payments.collection import service
from payments.collection.schemas import AccountCredit, AttemptPage, CollectionSettingsIn, CollectionSettingsOut
from payments.invoice.service import existing_invoice
from payments.refund import repository as refund_repo
from payments.refund.service import SEPA

router = APIRouter(prefix="/v1", tags=["collection"])


@router.get("/invoices/{invoice_id}/attempts", dependencies=[Read], response_model=AttemptPage)
async def list_attempts(invoice_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """The invoice's collection attempts and refunds; 404 for an invoice this seller has not
    issued (or payments has not learnt of yet), as for another seller's."""
    async with runtime.sessions() as session:
        await existing_invoice(session, tenant, invoice_id)
        rows = await repo.attempts_of(session, tenant, invoice_id)
        refunds = await refund_repo.refunds_of(session, tenant, invoice_id)
    items = [
        {
            "attempt_id": r.attempt_id,
            "attempt_no": r.attempt_no,
            "method": r.method,
            "provider": r.provider,
            "status": r.status,
            "amount": money_str(r.amount, r.currency),
            "currency": r.currency,
            "charge_on": r.charge_on.isoformat(),
            "provider_ref": r.provider_ref,
            "reason_code": r.reason_code,
            "reason": r.reason,
            "surplus": None if r.surplus is None else money_str(r.surplus, r.currency),
            "surplus_action": r.surplus_action,
        }
        for r in rows
    ]
    refunds_out = [
        {
            "refund_id": r.refund_id,
            "payment_id": r.payment_id,
            "credit_note_id": r.credit_note_id,
            "status": r.status,
            "amount": money_str(r.amount, r.currency),
            "currency": r.currency,
            "provider_ref": r.provider_ref,
            "provider": r.provider,
            "method": r.method,
            "refund_to": r.refund_to,
            "reason": r.reason,
            "file_url": f"/v1/refund-files/{r.provider_ref}" if r.provider == SEPA and r.provider_ref else None,
        }
        for r in refunds
    ]
    return {**page(items, len(items), None), "refunds": refunds_out}


@router.get("/accounts/{account_id}/credit", dependencies=[Read], response_model=AccountCredit)
async def get_credit(account_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """What the buyer paid beyond its invoices, per currency, kept for its next invoices."""
    async with runtime.sessions() as session:
        rows = await repo.credits_of(session, tenant, account_id)
    return {"account_id": account_id, "credit": [{"amount": money_str(r.amount, r.currency), "currency": r.currency} for r in rows]}


@router.put("/collection-settings", dependencies=[Admin], response_model=CollectionSettingsOut)
async def put_collection_settings(body: CollectionSettingsIn, tenant: Tenant, runtime: Runtime) -> CollectionSettingsOut:
    """The seller's collection settings; the same body again changes nothing."""
    async with runtime.transaction() as session:
        return await service.set_collection_settings(runtime, session, tenant, body)


@router.get("/collection-settings", dependencies=[Read], response_model=CollectionSettingsOut)
async def get_collection_settings(tenant: Tenant, runtime: Runtime) -> CollectionSettingsOut:
    async with runtime.sessions() as session:
        row = await repo.get_setting(session, tenant)
    return CollectionSettingsOut(surplus=row.surplus if row else "refund", updated_at=row.updated_at if row else None)
