"""Every query of bill runs."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from rating.billrun.models import BillRun, ChargesPreview, RatedCharge
from rating.db import unnest_insert

BILL_RUN: Table = tenant_owned(BillRun, "seller_id")
RATED_CHARGE: Table = tenant_owned(RatedCharge, "seller_id")
CHARGES_PREVIEW: Table = tenant_owned(ChargesPreview, "seller_id")


async def claim_run(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Insert the run if it is not there. A concurrent claim of the same run waits on the unique
    index until the first commits, then finds it taken: exactly one caller rates the period."""
    stmt = pg_insert(BILL_RUN).values(**row).on_conflict_do_nothing().returning(BILL_RUN.c.id)
    return (await session.execute(stmt)).first() is not None


async def claim_preview(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Record that a seller's period is being announced ahead of its run; False when it was already."""
    stmt = pg_insert(CHARGES_PREVIEW).values(**row).on_conflict_do_nothing().returning(CHARGES_PREVIEW.c.seller_id)
    return (await session.execute(stmt)).first() is not None


async def preview_claimed(session: AsyncSession, seller_id: str, period: str) -> bool:
    query = select_scoped(CHARGES_PREVIEW, seller_id, CHARGES_PREVIEW.c.period).where(CHARGES_PREVIEW.c.period == period)
    return (await session.execute(query)).first() is not None


async def finish_run(session: AsyncSession, run_id: str, buyers: int, lines: int, unrated: list[dict[str, Any]]) -> None:
    await session.execute(update(BILL_RUN).where(BILL_RUN.c.id == run_id).values(buyers=buyers, lines=lines, unrated=unrated))


async def get_run(session: AsyncSession, seller_id: str, run_id: str) -> Any:
    query = select_scoped(BILL_RUN, seller_id).where(BILL_RUN.c.id == run_id)
    return (await session.execute(query)).first()


async def list_runs(
    session: AsyncSession,
    seller_id: str,
    *,
    period_from: str | None,
    period_to: str | None,
    tier: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[Any]:
    """The seller's runs, newest period first (keyset on period, then id)."""
    query = select_scoped(BILL_RUN, seller_id)
    if period_from is not None:
        query = query.where(BILL_RUN.c.period >= period_from)
    if period_to is not None:
        query = query.where(BILL_RUN.c.period <= period_to)
    if tier is not None:
        query = query.where(BILL_RUN.c.tier == tier)
    if after is not None:
        period, run_id = after
        query = query.where((BILL_RUN.c.period < period) | ((BILL_RUN.c.period == period) & (BILL_RUN.c.id > run_id)))
    query = query.order_by(BILL_RUN.c.period.desc(), BILL_RUN.c.id).limit(limit)
    return list((await session.execute(query)).all())


# The rated charge's columns, as `add_charges` takes them.
CHARGE_COLUMNS: tuple[str, ...] = (
    "line_id",
    "bill_run_id",
    "seller_id",
    "account_id",
    "end_customer_id",
    "product_code",
    "description",
    "category",
    "service_period_start",
    "service_period_end",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "quantity_rule",
    "kind",
    "late",
)
_ADD_CHARGES = unnest_insert(RATED_CHARGE, CHARGE_COLUMNS, "ON CONFLICT DO NOTHING")


async def add_charges(session: AsyncSession, columns: dict[str, list[Any]]) -> int:
    """Write a run's charges in one statement whatever their number: each column one array
    parameter, unnested server-side (no multi-row VALUES to compile, no parameter limit). A line
    id already stored is skipped. Returns how many rows were written."""
    if not columns["line_id"]:
        return 0
    result = await session.execute(_ADD_CHARGES, {c: columns[c] for c in CHARGE_COLUMNS})
    return int(cast(CursorResult[Any], result).rowcount)  # a DML statement's result is a cursor's


async def closed_periods(session: AsyncSession, seller_id: str) -> dict[str, Any]:
    """The seller's closed periods, each with when its run was made."""
    query = select_scoped(BILL_RUN, seller_id, BILL_RUN.c.period, BILL_RUN.c.created_at)
    return {row.period: row.created_at for row in (await session.execute(query)).all()}
