"""Every query on steps reached, and the open cases the evaluation walks."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, tenant_owned
from dunning.case.models import CaseStatus, DunningCase
from dunning.step.models import CaseStep

STEP: Table = tenant_owned(CaseStep, "tenant")
CASE: Table = tenant_owned(DunningCase, "tenant")


async def reached(session: AsyncSession, case_id: str) -> set[tuple[int, str]]:
    rows = await session.execute(select(STEP.c.days_after_due, STEP.c.action).where(STEP.c.case_id == case_id))
    return {(r.days_after_due, r.action) for r in rows}


async def insert_step(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Record a step reached; False if the case had reached it already (the primary key decides)."""
    result = await session.execute(pg_insert(STEP).values(**row).on_conflict_do_nothing().returning(STEP.c.case_id))
    return result.first() is not None


async def count_action(session: AsyncSession, case_id: str, action: str) -> int:
    return int((await session.execute(select(func.count()).select_from(STEP).where(STEP.c.case_id == case_id, STEP.c.action == action))).scalar_one())


async def overdue_open_cases(session: AsyncSession, today: date, *, tenant: str | None, after: str | None, limit: int) -> list[tuple[str, str]]:
    """(case_id, invoice_id) of open cases past their due date, by case id after `after`."""
    query = select(CASE.c.case_id, CASE.c.invoice_id).where(CASE.c.status == CaseStatus.OPEN.value, CASE.c.due_on < today)
    if tenant is not None:
        query = scoped(query, CASE, tenant)
    if after is not None:
        query = query.where(CASE.c.case_id > after)
    rows = await session.execute(query.order_by(CASE.c.case_id).limit(limit))
    return [(r.case_id, r.invoice_id) for r in rows]


async def open_cases_by_step(session: AsyncSession) -> dict[str, int]:
    """How many cases are open, by the action of the last step they reached ("none" before the first)."""
    step = func.coalesce(CASE.c.step_action, "none")
    rows = await session.execute(select(step.label("step"), func.count().label("cases")).where(CASE.c.status == CaseStatus.OPEN.value).group_by(step))
    return {r.step: int(r.cases) for r in rows}
