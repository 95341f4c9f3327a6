"""Every query on the contact projection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from notify.contact.models import Contact

# A buyer's contact belongs to the seller that posted the customer (the events' tenant).
CONTACT: Table = tenant_owned(Contact, "partner_id")


async def upsert(session: AsyncSession, *, account_id: str, partner_id: str, name: str, billing_email: str, revision: int, at: datetime) -> bool:
    """Store this revision unless a later (or the same) one is already there; True if stored."""
    stmt = pg_insert(CONTACT).values(account_id=account_id, partner_id=partner_id, name=name, billing_email=billing_email, revision=revision, updated_at=at)
    upsert = stmt.on_conflict_do_update(
        index_elements=["account_id"],
        set_={k: stmt.excluded[k] for k in ("partner_id", "name", "billing_email", "revision", "updated_at")},
        where=CONTACT.c.revision < stmt.excluded.revision,
    ).returning(CONTACT.c.account_id)
    return (await session.execute(upsert)).first() is not None


async def get(session: AsyncSession, tenant: str, account_id: str) -> Contact | None:
    row = (await session.execute(select_scoped(CONTACT, tenant).where(CONTACT.c.account_id == account_id))).first()
    return Contact.model_validate(row._mapping) if row is not None else None
