"""Every query of bill runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from rating.billrun.models import BillRun, RatedCharge

BILL_RUN: Table = BillRun.__table__  # type: ignore[attr-defined]
RATED_CHARGE: Table = RatedCharge.__table__  # type: ignore[attr-defined]


async def claim_run(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Insert the run if it is not there. A concurrent claim of the same run waits on the unique
    index until the first commits, then finds it taken: exactly one caller rates the period."""
    stmt = pg_insert(BILL_RUN).values(**row).on_conflict_do_nothing().returning(BILL_RUN.c.id)
    return (await session.execute(stmt)).first() is not None


async def finish_run(session: AsyncSession, run_id: str, buyers: int, lines: int, unrated: list[dict[str, Any]]) -> None:
    await session.execute(update(BILL_RUN).where(BILL_RUN.c.id == run_id).values(buyers=buyers, lines=lines, unrated=unrated))


async def get_run(session: AsyncSession, seller_id: str, run_id: str) -> Any:
    query = select(BILL_RUN).where(BILL_RUN.c.id == run_id, BILL_RUN.c.seller_id == seller_id)
    return (await session.execute(query)).first()


async def add_charges(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 1000):
        await session.execute(pg_insert(RATED_CHARGE).values(rows[start : start + 1000]).on_conflict_do_nothing())


async def closed_periods(session: AsyncSession, seller_id: str) -> dict[str, Any]:
    """The seller's closed periods, each with when its run was made."""
    query = select(BILL_RUN.c.period, BILL_RUN.c.created_at).where(BILL_RUN.c.seller_id == seller_id)
    return {row.period: row.created_at for row in (await session.execute(query)).all()}
