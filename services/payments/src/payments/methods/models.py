"""Payment methods of buyers, and the buyers' customer records at each provider."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, false, text
from sqlmodel import Field

from payments.db import Base


class ProviderCustomer(Base, table=True):
    __tablename__ = "provider_customer"

    tenant: str = Field(primary_key=True)
    account_id: str = Field(primary_key=True)
    provider: str = Field(primary_key=True)
    customer_ref: str


class PaymentMethod(Base, table=True):
    __tablename__ = "payment_method"
    __table_args__ = (Index("uq_payment_method_default", "tenant", "account_id", unique=True, postgresql_where=text("is_default")),)

    tenant: str = Field(primary_key=True)
    method_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    type: str  # card | direct_debit | bank_transfer
    provider: str  # stripe | gocardless | bank_transfer
    status: str  # pending | active | failed | cancelled | expired
    customer_ref: str | None = None
    setup_ref: str | None = Field(default=None, index=True)  # SetupIntent or billing request id
    method_ref: str | None = Field(default=None, index=True)  # Stripe payment method or GoCardless mandate id
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The buyer's choice to collect from (at most one per buyer: a partial unique index); none
    # chosen, the most recently activated card or mandate is used.
    is_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    removed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))  # the buyer removed it
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
