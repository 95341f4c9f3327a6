"""Every query on the sellers' provider accounts. The credentials are sealed here on the way in
and opened on the way out (billing_runtime.crypto, associated data: tenant, provider, column), so
no other code sees a sealed value or stores a plain one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Table, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from billing_runtime.crypto import PREFIX, Keyring, context
from billing_runtime.tenancy import scoped, select_scoped, tenant_owned
from payments.providers.models import ProviderAccount

PROVIDER_ACCOUNT: Table = tenant_owned(ProviderAccount, "tenant")
SEALED_COLUMNS = ("api_key", "webhook_secret")


@dataclass(frozen=True)
class Credentials:
    """A seller's account at a provider, opened. `repr` shows no secret."""

    tenant: str
    provider: str
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    updated_at: datetime


def where(tenant: str, provider: str, column: str) -> bytes:
    return context("payments", "provider_account", tenant, provider, column)


async def upsert(session: AsyncSession, keyring: Keyring, tenant: str, provider: str, api_key: str, webhook_secret: str, at: datetime) -> None:
    row = {
        "tenant": tenant,
        "provider": provider,
        "updated_at": at,
        "api_key": keyring.seal(api_key, where(tenant, provider, "api_key")),
        "webhook_secret": keyring.seal(webhook_secret, where(tenant, provider, "webhook_secret")),
    }
    statement = pg_insert(PROVIDER_ACCOUNT).values(**row)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "provider"],
            set_={"api_key": statement.excluded.api_key, "webhook_secret": statement.excluded.webhook_secret, "updated_at": statement.excluded.updated_at},
        )
    )


async def get(session: AsyncSession, keyring: Keyring, tenant: str, provider: str) -> Credentials | None:
    query = select_scoped(PROVIDER_ACCOUNT, tenant).where(PROVIDER_ACCOUNT.c.provider == provider)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return Credentials(
        tenant=row.tenant,
        provider=row.provider,
        updated_at=row.updated_at,
        api_key=keyring.open(row.api_key, where(tenant, provider, "api_key")),
        webhook_secret=keyring.open(row.webhook_secret, where(tenant, provider, "webhook_secret")),
    )


async def reseal_all(conn: AsyncConnection, keyring: Keyring) -> int:
    """Seal again, with the current key, every credential sealed with an older one; how many rows
    changed. Row by row under a lock (a handful of rows per seller)."""
    current = f"{PREFIX}{keyring.current}:%"
    stale = or_(*[PROVIDER_ACCOUNT.c[c].not_like(current) for c in SEALED_COLUMNS])
    rows = (await conn.execute(select(PROVIDER_ACCOUNT).where(stale).with_for_update())).all()
    for row in rows:
        values = {}
        for column in SEALED_COLUMNS:
            resealed = keyring.reseal(getattr(row, column), where(row.tenant, row.provider, column))
            if resealed is not None:
                values[column] = resealed
        await conn.execute(scoped(update(PROVIDER_ACCOUNT), PROVIDER_ACCOUNT, row.tenant).where(PROVIDER_ACCOUNT.c.provider == row.provider).values(**values))
    return len(rows)
