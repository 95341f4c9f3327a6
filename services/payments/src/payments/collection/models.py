"""Collection attempts, and the credit (balance) a buyer holds after paying too much or being credited."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Column, DateTime, Index, Numeric, UniqueConstraint, text
from sqlmodel import Field

from payments.db import Base


class Attempt(Base, table=True):
    """One try at collecting an invoice from the buyer's card or mandate. The idempotency key
    is stored before the provider is called, so a retry after a lost answer cannot charge twice.
    Status (README, "Attempt states"): pending → processing | unknown → succeeded | failed, or
    canceled when nothing is open any more by the time it may be sent."""

    __tablename__ = "attempt"
    __table_args__ = (
        UniqueConstraint("invoice_id", "attempt_no"),
        # The collector's question "which open attempt is due?" reads only open attempts.
        Index("ix_payments_attempt_open_due", "next_call_at", postgresql_where=text("status IN ('pending', 'processing', 'unknown')")),
    )

    attempt_id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    invoice_id: str
    attempt_no: int
    method_id: str
    provider: str
    method: str  # card | direct_debit
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    currency: str
    charge_on: date
    idempotency_key: str
    status: str = Field(index=True)  # pending | processing | unknown | succeeded | failed | canceled
    provider_ref: str | None = Field(default=None, index=True)
    reason_code: str | None = None
    reason: str | None = None
    calls: int = 0
    next_call_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # Since when nobody knows what the provider did (a timeout, a 5xx); None when known.
    unknown_since: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    # What this success brought beyond what the invoice still asked (a second success), and what
    # became of it: `refund` (given back through the provider) or `credit` (the buyer's credit).
    surplus: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    surplus_action: str | None = None
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CollectionSetting(Base, table=True):
    """A seller's choices about collection: what to do with money a second success brings for
    an invoice already paid (`refund`, the default, or `credit`)."""

    __tablename__ = "collection_setting"

    tenant: str = Field(primary_key=True)
    surplus: str = "refund"
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class AccountCredit(Base, table=True):
    """Money a buyer paid beyond its invoices, kept for its next invoice."""

    __tablename__ = "account_credit"

    tenant: str = Field(primary_key=True)
    account_id: str = Field(primary_key=True)
    currency: str = Field(primary_key=True)
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
