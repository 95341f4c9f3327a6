"""Events in: issued invoices open cases, payments and credit notes reduce them, settlements
close them, failed payments advance them, customers tell which partner an account belongs to.
Each handler is bound to the runtime (for the outbox and the clock) in main.build()."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent
from billing_runtime.inbox import BatchHandler, Handler, RejectedEvents
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


def batch_handlers(runtime: ServiceRuntime) -> dict[str, BatchHandler]:
    """The events applied a polled run at a time (`runtime.on_batch`), set-based."""

    async def on_invoices_issued(session: AsyncSession, events: list[CloudEvent[Any]]) -> None:
        refused: dict[str, BaseException] = {}
        for event in events:
            try:
                service.case_row(event)
            except ValueError as exc:
                refused[event.id] = exc
        if refused:
            raise RejectedEvents(refused)  # dead-lettered alone; the rest of the run is applied again without them
        today = runtime.clock.today()
        for invoice_id in await service.open_cases(runtime, session, events):
            # An invoice that arrives already overdue (a replay, a late issue) catches up at once.
            await steps.evaluate_case(runtime, session, invoice_id, today)

    async def on_customers_upserted(session: AsyncSession, events: list[CloudEvent[Any]]) -> None:
        await accounts.apply_customers(runtime, session, [(event.tenant, event.data) for event in events])

    return {"InvoiceIssued": on_invoices_issued, "CustomerUpserted": on_customers_upserted}
