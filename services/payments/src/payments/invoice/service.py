"""Keeping the invoice projection: one row per issued invoice, money received added as it comes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, InvoiceIssued
from billing_events.money import open_amount, quantize
from billing_events.references import creditor_reference
from billing_runtime.errors import NotFound
from billing_runtime.issued import check_invoice_currency
from payments.invoice import repository as repo


def invoice_row(event: CloudEvent[InvoiceIssued]) -> dict[str, Any]:
    """The projection row of an issued invoice. The seller is the event's tenant: the partner
    (or the distributor) whose finance team records the money it receives."""
    data = event.data
    check_invoice_currency(data)
    return {
        "invoice_id": data.invoice_id,
        "tenant": event.tenant,
        "number": data.number,
        "seller_id": data.seller.account_id,
        "account_id": data.buyer.account_id,
        "currency": data.currency,
        "total": data.total.amount,
        "amount_received": Decimal(0),
        "issued_on": data.issued_on,
        "due_on": data.due_on,
        "buyer_name": data.buyer.name,
        "creditor_reference": creditor_reference(data.number),
    }


async def existing_invoice(session: AsyncSession, tenant: str, invoice_id: str) -> Any:
    """The seller's invoice as payments knows it, else 404 `invoice_not_found`: one it has not
    issued (or payments has not learnt of yet) and another seller's alike."""
    row = await repo.get_invoice(session, tenant, invoice_id)
    if row is None:
        raise NotFound(f"no invoice {invoice_id!r} of yours is known", code="invoice_not_found")
    return row


def open_and_overpaid(total: Decimal, received: Decimal, credited: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """(still open, overpaid), neither below zero, in the currency's decimals."""
    rest = open_amount(total, received, credited)
    return quantize(max(rest, Decimal(0)), currency), quantize(max(-rest, Decimal(0)), currency)
