"""Tables: what partners posted, as accepted. Keyed by (tenant, the partner's own id)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from usage_ingest.db import Base


class Customer(Base, table=True):
    __tablename__ = "customer"

    tenant: str = Field(primary_key=True)
    external_id: str = Field(primary_key=True)
    account_id: str = Field(index=True, unique=True)
    name: str
    billing_email: str
    country: str
    currency: str
    business: bool
    vat_id: str | None = None
    address: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    tax_exempt: bool = False
    contact_name: str | None = None  # the person to contact about billing
    contact_phone: str | None = None
    revision: int
    content_hash: str
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()))


class Order(Base, table=True):
    __tablename__ = "order"

    tenant: str = Field(primary_key=True)
    order_id: str = Field(primary_key=True)
    subscription_id: str
    account_id: str = Field(index=True)
    product_code: str
    quantity: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    start_on: date
    setup_exempt: bool = False
    content_hash: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # When the partner's customer asked for it, for an order imported from another system's history
    # (`POST /v1/admin/order-history`); None: the order was posted live and received_at is that moment.
    requested_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class OrderChange(Base, table=True):
    """A quantity change or the cancellation of an ordered subscription, by the partner's own id."""

    __tablename__ = "order_change"

    tenant: str = Field(primary_key=True)
    change_id: str = Field(primary_key=True)
    order_id: str = Field(index=True)
    kind: str  # quantity | cancellation
    quantity: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    effective_on: date
    content_hash: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    requested_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class UsageRecord(Base, table=True):
    __tablename__ = "usage_record"

    tenant: str = Field(primary_key=True)
    record_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    product_code: str
    quantity: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    cost: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    content_hash: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class QuantityObservation(Base, table=True):
    __tablename__ = "quantity_observation"

    tenant: str = Field(primary_key=True)
    observation_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    product_code: str
    observed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    source: str
    quantity: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    items: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    content_hash: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
