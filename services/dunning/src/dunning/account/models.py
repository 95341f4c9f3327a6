"""Suspensions of accounts, and the partner each customer account belongs to."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Index, text
from sqlmodel import Field

from dunning.db import Base


class Suspension(Base, table=True):
    """One suspension of one account by one cause: the account's own dunning with its seller
    (`cascaded_from` null) or the suspension of its partner by the distributor (`cascaded_from` =
    the partner's account). At most one active (unlifted) per account, seller and cause: a
    partial unique index, so two evaluations at once cannot suspend twice. The account is
    suspended while any of its suspensions with that seller is active."""

    __tablename__ = "suspension"
    __table_args__ = (
        Index(
            "uq_suspension_active",
            "tenant",
            "account_id",
            text("coalesce(cascaded_from, '')"),
            unique=True,
            postgresql_where=text("lifted_on IS NULL"),
        ),
    )

    suspension_id: str = Field(primary_key=True)
    tenant: str
    account_id: str = Field(index=True)
    seller_id: str
    case_id: str
    cascaded_from: str | None = None
    suspended_on: date
    lifted_on: date | None = None


class AccountLink(Base, table=True):
    """A customer account and the partner (tenant) it belongs to, from CustomerUpserted and from
    the cases a partner opens; what a cascade from the partner to its customers walks."""

    __tablename__ = "account_link"

    account_id: str = Field(primary_key=True)
    partner: str = Field(index=True)


class Partner(Base, table=True):
    """A partner (tenant) and its own billing account as the distributor's buyer:
    `account_id("distributor", partner)`, the same id usage-ingest gives a customer the
    distributor registers under the partner's slug."""

    __tablename__ = "partner"

    partner: str = Field(primary_key=True)
    account_id: str = Field(unique=True)
