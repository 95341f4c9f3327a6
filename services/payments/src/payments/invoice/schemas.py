"""API models of the invoice projection."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from billing_events import DecimalStr


class InvoiceOut(BaseModel):
    invoice_id: str
    invoice_number: str
    account_id: str
    currency: str
    total: DecimalStr
    amount_received: DecimalStr
    amount_open: DecimalStr
    overpaid: DecimalStr
    issued_on: date
    due_on: date
    amount_credited: DecimalStr
    creditor_reference: str | None
