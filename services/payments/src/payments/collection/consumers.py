"""Events in: each handler turns one event (or a batch of issued invoices) into one call of the
collection or refund service, with the runtime, the inbox's session and the typed event(s)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CreditNoteIssued, InvoiceIssued, PaymentRetryRequested
from billing_runtime.issued import refuse_mismatched_currencies
from billing_runtime.service import BatchHandlers, Handlers, ServiceRuntime
from payments.collection import service
from payments.refund import service as refunds


async def on_invoices_issued(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[InvoiceIssued]]) -> None:
    """A run of issued invoices, projected and collected set-based; an invoice whose total is in
    another currency is refused alone (`invoice_currency_mismatch`)."""
    refuse_mismatched_currencies(events)
    await service.on_invoices_issued(runtime, session, events)


HANDLERS: Handlers = {CreditNoteIssued: refunds.on_credit_note_issued, PaymentRetryRequested: service.on_retry_requested}

BATCH_HANDLERS: BatchHandlers = {InvoiceIssued: on_invoices_issued}
