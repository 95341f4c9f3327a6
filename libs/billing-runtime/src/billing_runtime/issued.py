"""What a consumer of `InvoiceIssued` refuses before it keeps an invoice of its own (payments'
projection, dunning's case): a total in another currency than the invoice's. The amounts it would
collect or chase are in `currency`; a total in another is a producer's bug, dead-lettered alone."""

from __future__ import annotations

from collections.abc import Sequence

from billing_events import CloudEvent, InvoiceIssued
from billing_runtime.errors import Unprocessable
from billing_runtime.inbox import RejectedEvents


class InvoiceCurrencyMismatch(Unprocessable, ValueError):
    """An InvoiceIssued whose total is in another currency than the invoice: not kept (dead-lettered)."""

    code = "invoice_currency_mismatch"


def check_invoice_currency(data: InvoiceIssued) -> None:
    if data.total.currency != data.currency:
        raise InvoiceCurrencyMismatch(f"invoice {data.invoice_id} total is in {data.total.currency}, not {data.currency}")


def refuse_mismatched_currencies(events: Sequence[CloudEvent[InvoiceIssued]]) -> None:
    """For a batch handler of issued invoices: `RejectedEvents` naming each invoice whose total is
    in another currency, so those are dead-lettered alone and the rest of the run applied again
    without them; nothing when all agree."""
    refused: dict[str, BaseException] = {}
    for event in events:
        try:
            check_invoice_currency(event.data)
        except InvoiceCurrencyMismatch as exc:
            refused[event.id] = exc
    if refused:
        raise RejectedEvents(refused)
