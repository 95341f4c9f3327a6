"""Cases, and the facts that move them (payments, settlements), kept even when they arrive
before the invoice they are about: the invoices and payments topics are not ordered together."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Column, Numeric
from sqlmodel import Field

from dunning.db import Base


class CaseStatus(StrEnum):
    """A dunning case is open until its invoice is paid, credited or written off."""

    OPEN = "open"
    CLOSED = "closed"


class DunningCase(Base, table=True):
    __tablename__ = "dunning_case"

    case_id: str = Field(primary_key=True)
    invoice_id: str = Field(unique=True)
    tenant: str = Field(index=True)
    seller_id: str
    account_id: str = Field(index=True)
    invoice_number: str
    currency: str
    total: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    amount_paid: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    amount_open: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    issued_on: date
    due_on: date
    status: str = Field(index=True)
    closed_on: date | None = None
    close_reason: str | None = None
    # The latest policy step reached (number, action, day), null before the first.
    step: int | None = None
    step_action: str | None = None
    step_reached_on: date | None = None


class CasePayment(Base, table=True):
    """A PaymentSucceeded against an invoice, once per payment (a replay adds nothing)."""

    __tablename__ = "case_payment"

    invoice_id: str = Field(primary_key=True)
    payment_id: str = Field(primary_key=True)
    tenant: str
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    paid_on: date


class InvoiceSettlement(Base, table=True):
    """An InvoiceSettled, remembered until (and after) the case it closes exists."""

    __tablename__ = "invoice_settlement"

    invoice_id: str = Field(primary_key=True)
    tenant: str
    settled_on: date
    amount_paid: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str


class CasePaymentFailure(Base, table=True):
    """A PaymentFailed against an invoice, once per payment attempt."""

    __tablename__ = "case_payment_failure"

    invoice_id: str = Field(primary_key=True)
    payment_id: str = Field(primary_key=True)
    tenant: str
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    failed_on: date
    reason_code: str
    reason: str


class CaseCredit(Base, table=True):
    """A CreditNoteIssued against an invoice: reduces what is owed, once per credit note."""

    __tablename__ = "case_credit"

    invoice_id: str = Field(primary_key=True)
    credit_note_id: str = Field(primary_key=True)
    tenant: str
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    issued_on: date
