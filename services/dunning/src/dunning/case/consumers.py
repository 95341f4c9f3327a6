"""Events in: issued invoices open cases, payments and credit notes reduce them, settlements
close them, failed payments advance them, customers tell which partner an account belongs to.
Each handler is bound to the runtime (for the outbox and the clock) in main.build()."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.inbox import Handler
from billing_runtime.service import ServiceRuntime
from dunning.account import service as accounts
from dunning.case import service
from dunning.step import service as steps


def handlers(runtime: ServiceRuntime) -> dict[str, Handler]:
    """One handler per event model name."""

    async def on_invoice_issued(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.open_case(runtime, session, event)
        # An invoice that arrives already overdue (a replay, a late issue) catches up at once.
        await steps.evaluate_case(runtime, session, event.data.invoice_id, runtime.clock.today())

    async def on_payment_succeeded(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.apply_payment(runtime, session, event)

    async def on_invoice_settled(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.settle_case(runtime, session, event)

    async def on_credit_note_issued(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await service.apply_credit_note(runtime, session, event)

    async def on_payment_failed(session: AsyncSession, event: CloudEvent[Any]) -> None:
        if await service.apply_payment_failure(runtime, session, event):
            await steps.evaluate_case(runtime, session, event.data.invoice_id, runtime.clock.today())

    async def on_customer_upserted(session: AsyncSession, event: CloudEvent[Any]) -> None:
        await accounts.apply_customer(runtime, session, event.tenant, event.data)

    return {
        "InvoiceIssued": on_invoice_issued,
        "PaymentSucceeded": on_payment_succeeded,
        "InvoiceSettled": on_invoice_settled,
        "CreditNoteIssued": on_credit_note_issued,
        "PaymentFailed": on_payment_failed,
        "CustomerUpserted": on_customer_upserted,
    }
