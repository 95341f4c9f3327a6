"""Every query on suspensions, partners and customer links."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, select_scoped, tenant_owned
from dunning.account.models import AccountLink, Partner, Suspension
from dunning.case.models import CaseStatus, DunningCase
from dunning.policy.schemas import Action
from dunning.step.models import CaseStep

SUSPENSION: Table = tenant_owned(Suspension, "tenant")
LINK: Table = AccountLink.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
PARTNER: Table = Partner.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
CASE: Table = tenant_owned(DunningCase, "tenant")
STEP: Table = tenant_owned(CaseStep, "tenant")


async def lock_account(session: AsyncSession, tenant: str, account_id: str) -> None:
    """Serialise suspension changes of one account with one seller until the transaction ends."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"dunning:account:{tenant}:{account_id}", 0))))


async def active_suspensions(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    query = select_scoped(SUSPENSION, tenant).where(SUSPENSION.c.account_id == account_id, SUSPENSION.c.lifted_on.is_(None))
    return list((await session.execute(query.order_by(SUSPENSION.c.suspended_on, SUSPENSION.c.suspension_id))).all())


async def insert_suspension(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Insert unless this suspension exists or the account already has an active one of this cause."""
    result = await session.execute(pg_insert(SUSPENSION).values(**row).on_conflict_do_nothing().returning(SUSPENSION.c.suspension_id))
    return result.first() is not None


async def lift(session: AsyncSession, suspension_id: str, on: date) -> bool:
    result = await session.execute(
        update(SUSPENSION)
        .where(SUSPENSION.c.suspension_id == suspension_id, SUSPENSION.c.lifted_on.is_(None))
        .values(lifted_on=on)
        .returning(SUSPENSION.c.suspension_id)
    )
    return result.first() is not None


async def repoint(session: AsyncSession, suspension_id: str, case_id: str) -> None:
    await session.execute(update(SUSPENSION).where(SUSPENSION.c.suspension_id == suspension_id).values(case_id=case_id))


async def cascaded_from(session: AsyncSession, partner_account_id: str) -> list[Any]:
    """Active suspensions of customers caused by their partner's suspension."""
    query = select(SUSPENSION).where(SUSPENSION.c.cascaded_from == partner_account_id, SUSPENSION.c.lifted_on.is_(None))
    return list((await session.execute(query.order_by(SUSPENSION.c.account_id))).all())


async def other_suspending_case(session: AsyncSession, tenant: str, account_id: str, case_id: str) -> str | None:
    """Another open case of the account that has reached its suspend step, if any: the account
    stays suspended for it."""
    query = (
        scoped(select(CASE.c.case_id).join(STEP, STEP.c.case_id == CASE.c.case_id), CASE, tenant)
        .where(
            CASE.c.account_id == account_id,
            CASE.c.status == CaseStatus.OPEN.value,
            CASE.c.case_id != case_id,
            STEP.c.action == Action.SUSPEND.value,
        )
        .order_by(CASE.c.due_on, CASE.c.case_id)
        .limit(1)
    )
    return (await session.execute(query)).scalar()


async def link_customers(session: AsyncSession, account_ids: list[str], partner: str) -> list[str]:
    """`link_customer` for a batch of one partner's accounts in one statement; the new links."""
    if not account_ids:
        return []
    rows = [{"account_id": a, "partner": partner} for a in dict.fromkeys(account_ids)]
    stmt = pg_insert(LINK).values(rows).on_conflict_do_nothing(index_elements=["account_id"]).returning(LINK.c.account_id)
    return list((await session.execute(stmt)).scalars())


async def link_customer(session: AsyncSession, account_id: str, partner: str) -> bool:
    stmt = pg_insert(LINK).values(account_id=account_id, partner=partner).on_conflict_do_nothing(index_elements=["account_id"]).returning(LINK.c.account_id)
    return (await session.execute(stmt)).first() is not None


async def record_partner(session: AsyncSession, partner: str, account_id: str) -> None:
    await session.execute(pg_insert(PARTNER).values(partner=partner, account_id=account_id).on_conflict_do_nothing())


async def partner_of_account(session: AsyncSession, account_id: str) -> str | None:
    return (await session.execute(select(PARTNER.c.partner).where(PARTNER.c.account_id == account_id))).scalar()


async def customers_of(session: AsyncSession, partner: str) -> list[str]:
    return list((await session.execute(select(LINK.c.account_id).where(LINK.c.partner == partner).order_by(LINK.c.account_id))).scalars())
