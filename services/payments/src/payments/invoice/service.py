"""Keeping the invoice projection: one row per issued invoice, money received added as it comes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_events import CloudEvent, InvoiceIssued
from billing_events.money import open_amount, quantize
from billing_events.references import creditor_reference
from billing_runtime.issued import check_invoice_currency


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


def open_and_overpaid(total: Decimal, received: Decimal, credited: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """(still open, overpaid), neither below zero, in the currency's decimals."""
    rest = open_amount(total, received, credited)
    return quantize(max(rest, Decimal(0)), currency), quantize(max(-rest, Decimal(0)), currency)
