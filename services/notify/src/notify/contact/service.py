"""The contact projection: who receives an account's billing mail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CustomerUpserted
from notify.contact import repository as repo


async def apply_customer(session: AsyncSession, customer: CustomerUpserted, at: datetime) -> bool:
    """Record a customer's billing contact. Events of one customer can arrive out of order
    after a replay, so the highest revision wins, whatever the arrival order."""
    return await repo.upsert(
        session,
        account_id=customer.account_id,
        partner_id=customer.partner_id,
        name=customer.name,
        billing_email=customer.billing_email,
        revision=customer.revision,
        at=at,
    )


async def billing_email(session: AsyncSession, tenant: str, account_id: str) -> str | None:
    """The account's billing contact, if notify has heard of the account from this tenant."""
    contact = await repo.get(session, tenant, account_id)
    return contact.billing_email if contact is not None else None
