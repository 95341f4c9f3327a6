"""Refunds, the credit notes they answer, the bank accounts a refund file pays from and to, and the files."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, LargeBinary, Numeric
from sqlmodel import Field

from payments.db import Base


class Refund(Base, table=True):
    """Money given back from one payment: for one credit note (`refund_id` = `<credit note>:<payment>`),
    or the surplus of a second success on an invoice already paid (`refund_id` = `surplus:<attempt>`,
    no credit note). Written with the provider's idempotency key before the provider is called, like an attempt."""

    __tablename__ = "refund"

    refund_id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    credit_note_id: str | None = None  # None: the surplus of a second success (`surplus:<attempt>`)
    invoice_id: str
    payment_id: str
    attempt_id: str | None = None
    provider: str  # stripe | gocardless | sepa_credit_transfer | account_credit
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    idempotency_key: str
    status: str = Field(index=True)  # pending | succeeded | failed | unknown
    provider_ref: str | None = None
    reason: str | None = None
    calls: int = 0
    next_call_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Added with refunds on paid invoices (nullable: refunds written before say nothing).
    refund_to: str | None = None  # original_method | buyer_balance
    method: str | None = None  # card | direct_debit | bank_transfer | account_credit
    credit_note_number: str | None = None


class CreditNoteApplied(Base, table=True):
    """A credit note this service has acted on: the same credit note again (a replay under any event id) does nothing."""

    __tablename__ = "credit_note_applied"

    tenant: str = Field(primary_key=True)
    credit_note_id: str = Field(primary_key=True)
    invoice_id: str
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    refund_to: str
    to_return: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    applied_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class BankAccount(Base, table=True):
    """A bank account a SEPA refund file names: the seller's own (`owner` = "seller", the debtor) or
    a buyer's (`owner` = its account id, the creditor)."""

    __tablename__ = "bank_account"

    tenant: str = Field(primary_key=True)
    owner: str = Field(primary_key=True)
    name: str
    iban: str
    bic: str | None = None
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RefundFile(Base, table=True):
    """A SEPA credit transfer initiation (pain.001.001.03) paying one bank-transfer refund back,
    for the seller to upload to its bank."""

    __tablename__ = "refund_file"

    tenant: str = Field(primary_key=True)
    file_id: str = Field(primary_key=True)
    refund_id: str = Field(unique=True)
    message_id: str
    end_to_end_id: str
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
