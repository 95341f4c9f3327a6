"""Tables: issued invoices, their lines, and the payments applied to them."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Column, DateTime, Index, Numeric, UniqueConstraint, false, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from invoicing.db import Base


def _money(nullable: bool = False) -> Any:
    return Field(sa_column=Column(Numeric, nullable=nullable))


class Invoice(Base, table=True):
    __tablename__ = "invoice"
    __table_args__ = (
        # One invoice per seller, buyer and period: a replayed or duplicated PeriodClosed issues nothing.
        UniqueConstraint("seller_id", "buyer_account_id", "period_start", "period_end", name="uq_invoice_seller_buyer_period"),
        UniqueConstraint("seller_id", "seq", name="uq_invoice_seller_seq"),
        UniqueConstraint("seller_id", "number", name="uq_invoice_seller_number"),
        CheckConstraint("status IN ('open', 'paid', 'void')", name="status"),
        Index("ix_invoice_seller_buyer", "seller_id", "buyer_account_id"),
        Index("ix_invoice_seller_period", "seller_id", "period_start"),
        Index("ix_invoice_seller_issued_on", "seller_id", "issued_on"),
        # The background renderer's look for invoices issued lately (invoicing.documents.ahead).
        Index("ix_invoice_issued_at", "issued_at"),
    )

    invoice_id: str = Field(primary_key=True)
    seller_id: str
    buyer_account_id: str
    bill_run_id: str
    seq: int
    number: str
    description: str
    period_start: date
    period_end: date
    issued_on: date
    due_on: date
    paid_on: date | None = None
    status: str
    currency: str
    net_total: Decimal = _money()
    tax_total: Decimal = _money()
    total: Decimal = _money()
    amount_paid: Decimal = _money()
    # Parties as they were on the invoice date: an issued invoice is never edited.
    seller: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    buyer: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    tax_breakdown: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    tier: str = Field(default="retail")
    flags: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")))
    # Σ totals of the credit notes issued against this invoice (positive); open = total − paid − credited.
    credited_total: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric, nullable=False, server_default=text("0")))
    voided_on: date | None = None


class InvoiceLine(Base, table=True):
    __tablename__ = "invoice_line"
    __table_args__ = (UniqueConstraint("invoice_id", "line_id", name="uq_invoice_line_invoice_line_id"),)

    invoice_id: str = Field(primary_key=True, foreign_key="invoicing.invoice.invoice_id")
    position: int = Field(primary_key=True)
    line_id: str
    product_code: str
    description: str
    category: str | None = None
    end_customer_id: str | None = None
    service_period_start: date
    service_period_end: date
    quantity: Decimal = _money()
    unit_price: Decimal = _money()
    # `amount` is rating's exact figure; `net` is it rounded once to the currency's minor unit.
    amount: Decimal = _money()
    net: Decimal = _money()
    tax_rate: Decimal = _money()
    tax_category: str
    kind: str = Field(default="recurring")
    timing: str = Field(default="arrears")
    unit: str | None = None
    end_customer_name: str | None = None
    tax_scheme: str = Field(default="not_assessed")
    tax_country: str | None = None
    # Usage or a term of an earlier period, closed before it arrived: its service dates are that period's.
    late: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class Payment(Base, table=True):
    __tablename__ = "payment"

    payment_id: str = Field(primary_key=True)
    invoice_id: str = Field(index=True, foreign_key="invoicing.invoice.invoice_id")
    seller_id: str
    amount: Decimal = _money()
    currency: str
    method: str
    provider: str
    paid_on: date
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Refund(Base, table=True):
    """Money given back on a payment (PaymentRefunded): it reopens what it no longer covers."""

    __tablename__ = "refund"

    refund_id: str = Field(primary_key=True)
    payment_id: str
    invoice_id: str = Field(index=True, foreign_key="invoicing.invoice.invoice_id")
    seller_id: str
    amount: Decimal = _money()
    currency: str
    refunded_on: date
    credit_note_id: str | None = None
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
