"""Partner HTTP: collection attempts of an invoice, and a buyer's credit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from billing_events.money import money_str
from billing_runtime.api import Read, Runtime, Tenant, page
from billing_runtime.errors import NotFound
from payments.collection import repository as repo
from payments.invoice import repository as invoice_repo

router = APIRouter(prefix="/v1", tags=["collection"])


@router.get("/invoices/{invoice_id}/attempts", dependencies=[Read])
async def list_attempts(invoice_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """The invoice's collection attempts and refunds; 404 for an invoice this seller has not
    issued (or payments has not learnt of yet), as for another seller's."""
    async with runtime.sessions() as session:
        if await invoice_repo.get_invoice(session, tenant, invoice_id) is None:
            raise NotFound(f"no invoice {invoice_id!r} of yours is known", code="invoice_not_found")
        rows = await repo.attempts_of(session, tenant, invoice_id)
        refunds = await repo.refunds_of(session, tenant, invoice_id)
    items = [
        {"attempt_id": r.attempt_id, "attempt_no": r.attempt_no, "method": r.method, "provider": r.provider, "status": r.status,
         "amount": money_str(r.amount, r.currency), "currency": r.currency, "charge_on": r.charge_on.isoformat(),
         "provider_ref": r.provider_ref, "reason_code": r.reason_code, "reason": r.reason}
        for r in rows
    ]
    refunds_out = [
        {"refund_id": r.refund_id, "payment_id": r.payment_id, "credit_note_id": r.credit_note_id, "status": r.status,
         "amount": money_str(r.amount, r.currency), "currency": r.currency, "provider_ref": r.provider_ref}
        for r in refunds
    ]
    return {**page(items, len(items), None), "refunds": refunds_out}


@router.get("/accounts/{account_id}/credit", dependencies=[Read])
async def get_credit(account_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """What the buyer paid beyond its invoices, per currency, kept for its next invoices."""
    async with runtime.sessions() as session:
        rows = await repo.credits_of(session, tenant, account_id)
    return {"account_id": account_id, "credit": [{"amount": money_str(r.amount, r.currency), "currency": r.currency} for r in rows]}
