"""Tables: what rating has learnt from usage-ingest's events, as projections keyed by the
partner's ids. Each is written so that applying an event again, or out of order, changes nothing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Index, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from rating.db import Base


class BuyerAccount(Base, table=True):
    """A customer of a seller (the partner), at its latest revision."""

    __tablename__ = "buyer_account"

    seller_id: str = Field(primary_key=True)
    account_id: str = Field(primary_key=True)
    external_id: str
    name: str
    currency: str
    revision: int


class Subscription(Base, table=True):
    __tablename__ = "subscription"

    seller_id: str = Field(primary_key=True)
    subscription_id: str = Field(primary_key=True)
    order_id: str
    account_id: str = Field(index=True)
    product_code: str
    quantity: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    start_on: date
    ordered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    setup_exempt: bool = False


class SubscriptionPolicy(Base, table=True):
    """A subscription's overrides of its product's billing policy (the knobs of PolicyIn)."""

    __tablename__ = "subscription_policy"

    seller_id: str = Field(primary_key=True)
    subscription_id: str = Field(primary_key=True)
    policy: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SubscriptionChange(Base, table=True):
    """A quantity change or a cancellation, kept apart from the subscription so it can arrive
    before it; the subscription's state on a day is read from these at rating time."""

    __tablename__ = "subscription_change"

    seller_id: str = Field(primary_key=True)
    subscription_id: str = Field(primary_key=True)
    order_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    kind: str  # "quantity" | "cancellation"
    quantity: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    effective_on: date
    requested_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class UsageRecord(Base, table=True):
    __tablename__ = "usage_record"
    __table_args__ = (Index("ix_usage_record_account_occurred", "seller_id", "account_id", "occurred_at"),)

    seller_id: str = Field(primary_key=True)
    record_id: str = Field(primary_key=True)
    account_id: str
    product_code: str
    quantity: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    cost: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    cost_currency: str | None = None
    bill_run_id: str | None = Field(default=None, index=True)  # the seller's own (retail) run that billed it
    wholesale_bill_run_id: str | None = Field(default=None, index=True)  # the distributor's run that billed it to the partner


class QuantityObservation(Base, table=True):
    __tablename__ = "quantity_observation"
    __table_args__ = (Index("ix_quantity_observation_account_observed", "seller_id", "account_id", "observed_at"),)

    seller_id: str = Field(primary_key=True)
    observation_id: str = Field(primary_key=True)
    account_id: str
    product_code: str
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    source: str
    quantity: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    items: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    bill_run_id: str | None = Field(default=None, index=True)
