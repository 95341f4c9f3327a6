"""Events in: issued invoices open cases, payments and credit notes reduce them, settlements
close them, failed payments advance them, customers tell which partner an account belongs to.
Each handler gets the runtime (for the outbox and the clock), the inbox's session and its event(s)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CreditNoteIssued, CustomerUpserted, InvoiceIssued, InvoiceSettled, PaymentFailed, PaymentSucceeded
from billing_runtime.issued import refuse_mismatched_currencies
from billing_runtime.service import BatchHandlers, Handlers, ServiceRuntime
from dunning.account import service as accounts
from dunning.case import service
from dunning.step import service as steps


async def on_payment_succeeded(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentSucceeded]) -> None:
    await service.apply_payment(runtime, session, event)


async def on_invoice_settled(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[InvoiceSettled]) -> None:
    await service.settle_case(runtime, session, event)


async def on_credit_note_issued(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[CreditNoteIssued]) -> None:
    await service.apply_credit_note(runtime, session, event)


async def on_payment_failed(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentFailed]) -> None:
    if await service.apply_payment_failure(runtime, session, event):
        await steps.evaluate_case(runtime, session, event.data.invoice_id, runtime.clock.today())


async def on_invoices_issued(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[InvoiceIssued]]) -> None:
    """A run of issued invoices opens their cases set-based; an invoice whose total is in another
    currency is refused alone (`invoice_currency_mismatch`)."""
    refuse_mismatched_currencies(events)
    today = runtime.clock.today()
    for invoice_id in await service.open_cases(runtime, session, events):
        # An invoice that arrives already overdue (a replay, a late issue) catches up at once.
        await steps.evaluate_case(runtime, session, invoice_id, today)


async def on_customers_upserted(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[CustomerUpserted]]) -> None:
    await accounts.apply_customers(runtime, session, [(event.tenant, event.data) for event in events])


HANDLERS: Handlers = {
    PaymentSucceeded: on_payment_succeeded,
    InvoiceSettled: on_invoice_settled,
    CreditNoteIssued: on_credit_note_issued,
    PaymentFailed: on_payment_failed,
}

BATCH_HANDLERS: BatchHandlers = {InvoiceIssued: on_invoices_issued, CustomerUpserted: on_customers_upserted}
