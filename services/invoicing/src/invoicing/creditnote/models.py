"""Credit notes: the only way an issued invoice changes (BILLING-RULES §7). Amounts are stored
positive, as credited; documents and events show them negative."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


def _money() -> Any:
    return Field(sa_column=Column(Numeric, nullable=False))


class CreditNote(Base, table=True):
    __tablename__ = "credit_note"
    __table_args__ = (
        # The caller's Idempotency-Key: posting the same credit note again returns the first.
        UniqueConstraint("seller_id", "idempotency_key", name="uq_credit_note_seller_idempotency_key"),
        UniqueConstraint("seller_id", "seq", name="uq_credit_note_seller_seq"),
    )

    credit_note_id: str = Field(primary_key=True)
    seller_id: str
    idempotency_key: str
    invoice_id: str = Field(index=True, foreign_key="invoicing.invoice.invoice_id")
    buyer_account_id: str
    seq: int
    number: str
    issued_on: date
    currency: str
    reason: str | None = None
    net_total: Decimal = _money()
    tax_total: Decimal = _money()
    total: Decimal = _money()
    tax_breakdown: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # The seller's choice for money paid beyond what the invoice asks after this credit note
    # (original_method | buyer_balance), and how much that was as invoicing knew it at issue.
    refund_to: str | None = None
    amount_to_return: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))


class CreditNoteLine(Base, table=True):
    __tablename__ = "credit_note_line"

    credit_note_id: str = Field(primary_key=True, foreign_key="invoicing.credit_note.credit_note_id")
    position: int = Field(primary_key=True)
    line_id: str = Field(description="The credited invoice line.")
    product_code: str
    description: str
    service_period_start: date
    service_period_end: date
    quantity: Decimal = _money()
    unit_price: Decimal = _money()
    net: Decimal = _money()
    tax_rate: Decimal = _money()
    tax_category: str
    tax_scheme: str
    tax_country: str | None = None
