"""Every query on provider events received."""

from __future__ import annotations

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, tenant_owned
from payments.webhooks.models import ProviderEvent

PROVIDER_EVENT: Table = tenant_owned(ProviderEvent, "tenant")


async def claim(session: AsyncSession, row: dict[str, object]) -> bool:
    """Record a provider event as received; False if it already was. A concurrent delivery of
    the same event waits here until the first commits, then finds it taken."""
    result = await session.execute(pg_insert(PROVIDER_EVENT).values(**row).on_conflict_do_nothing().returning(PROVIDER_EVENT.c.event_id))
    return result.first() is not None


async def set_effect(session: AsyncSession, tenant: str, provider: str, event_id: str, effect: str) -> None:
    await session.execute(
        scoped(update(PROVIDER_EVENT), PROVIDER_EVENT, tenant)
        .where(PROVIDER_EVENT.c.provider == provider, PROVIDER_EVENT.c.event_id == event_id)
        .values(effect=effect)
    )
