"""Credit note HTTP: the seller credits its own issued invoices, open or paid, idempotently by the caller's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, Write
from invoicing.config import Settings
from invoicing.creditnote import repository as repo
from invoicing.creditnote.schemas import CreditNoteIn, CreditNoteList, CreditNoteOut
from invoicing.creditnote.service import CreditRequestLine, InvalidCreditLine, existing_credit_note, issue_credit_note
from invoicing.invoice.service import existing_invoice

router = APIRouter(prefix="/v1", tags=["credit notes"])

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]


@router.post("/invoices/{invoice_id}/credit-notes", dependencies=[Write], response_model=CreditNoteOut, status_code=201)
async def post_credit_note(invoice_id: str, body: CreditNoteIn, tenant: Tenant, runtime: Runtime[Settings], idempotency_key: IdempotencyKey) -> CreditNoteOut:
    if body.lines is not None and body.amount is not None:
        raise InvalidCreditLine("give lines or amount, not both", field="amount")
    lines = [CreditRequestLine(li.line_id, li.amount) for li in body.lines] if body.lines is not None else None
    async with runtime.transaction() as session:
        credit_note_id = await issue_credit_note(
            runtime, session, tenant, invoice_id, idempotency_key, reason=body.reason, lines=lines, amount=body.amount, refund_to=body.refund_to
        )
    return await get_credit_note(credit_note_id, tenant, runtime, None)


@router.get("/invoices/{invoice_id}/credit-notes", dependencies=[Read, ForAccount], response_model=CreditNoteList)
async def list_credit_notes(invoice_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> CreditNoteList:
    async with runtime.sessions() as session:
        await existing_invoice(session, tenant, invoice_id, buyer_account_id=account)
        rows = await repo.for_invoice(session, tenant, invoice_id)
        items = [CreditNoteOut.from_rows(row, await repo.get_lines(session, row.credit_note_id)) for row in rows]
    return CreditNoteList(items=items)


@router.get("/credit-notes/{credit_note_id}", dependencies=[Read, ForAccount], response_model=CreditNoteOut)
async def get_credit_note(credit_note_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> CreditNoteOut:
    async with runtime.sessions() as session:
        row = await existing_credit_note(session, tenant, credit_note_id, buyer_account_id=account)
        lines = await repo.get_lines(session, credit_note_id)
    return CreditNoteOut.from_rows(row, lines)
