"""Every query on dunning policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from dunning.policy.models import DunningPolicy

POLICY: Table = tenant_owned(DunningPolicy, "tenant")


async def get(session: AsyncSession, tenant: str) -> Any:
    return (await session.execute(select_scoped(POLICY, tenant))).first()


async def put(session: AsyncSession, tenant: str, steps: list[dict[str, Any]], cascade_to_customers: bool, at: datetime) -> Any:
    stmt = pg_insert(POLICY).values(tenant=tenant, steps=steps, cascade_to_customers=cascade_to_customers, updated_at=at)
    upsert = stmt.on_conflict_do_update(
        index_elements=["tenant"], set_={"steps": stmt.excluded.steps, "cascade_to_customers": stmt.excluded.cascade_to_customers, "updated_at": at}
    ).returning(*POLICY.c)
    return (await session.execute(upsert)).one()
