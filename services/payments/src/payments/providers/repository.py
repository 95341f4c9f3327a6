"""Every query on the sellers' provider accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.providers.models import ProviderAccount

PROVIDER_ACCOUNT: Table = ProviderAccount.__table__  # type: ignore[attr-defined]


async def upsert(session: AsyncSession, row: dict[str, Any]) -> None:
    statement = pg_insert(PROVIDER_ACCOUNT).values(**row)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "provider"],
            set_={"api_key": statement.excluded.api_key, "webhook_secret": statement.excluded.webhook_secret, "updated_at": statement.excluded.updated_at},
        )
    )


async def get(session: AsyncSession, tenant: str, provider: str) -> Any:
    query = select(PROVIDER_ACCOUNT).where(PROVIDER_ACCOUNT.c.tenant == tenant, PROVIDER_ACCOUNT.c.provider == provider)
    return (await session.execute(query)).first()
