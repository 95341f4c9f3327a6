"""Finance HTTP: what is still open on an invoice, before a bank transfer is entered."""

from __future__ import annotations

from fastapi import APIRouter

from billing_events.money import quantize
from billing_runtime.api import Read, Runtime, Tenant
from payments.invoice.schemas import InvoiceOut
from payments.invoice.service import existing_invoice, open_and_overpaid

router = APIRouter(prefix="/v1", tags=["invoices"])


@router.get("/invoices/{invoice_id}", dependencies=[Read], response_model=InvoiceOut)
async def get_invoice(invoice_id: str, tenant: Tenant, runtime: Runtime) -> InvoiceOut:
    async with runtime.sessions() as session:
        row = await existing_invoice(session, tenant, invoice_id)
    amount_open, overpaid = open_and_overpaid(row.total, row.amount_received, row.amount_credited, row.currency)
    return InvoiceOut(
        invoice_id=row.invoice_id,
        invoice_number=row.number,
        account_id=row.account_id,
        currency=row.currency,
        total=row.total,
        amount_received=quantize(row.amount_received, row.currency),
        amount_open=amount_open,
        overpaid=overpaid,
        issued_on=row.issued_on,
        due_on=row.due_on,
        amount_credited=quantize(row.amount_credited, row.currency),
        creditor_reference=row.creditor_reference,
    )
