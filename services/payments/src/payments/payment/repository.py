"""Every query on recorded payments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, select_scoped, tenant_owned
from payments.payment.models import Payment

PAYMENT: Table = tenant_owned(Payment, "tenant")


async def get_payment(session: AsyncSession, tenant: str, payment_id: str, *, account_id: str | None = None) -> Any:
    query = of_account(select_scoped(PAYMENT, tenant).where(PAYMENT.c.payment_id == payment_id), PAYMENT.c.account_id, account_id)
    return (await session.execute(query)).first()


async def insert_payment(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Insert a payment unless its id is taken (a concurrent request got there first)."""
    result = await session.execute(
        pg_insert(PAYMENT).values(**row).on_conflict_do_nothing(index_elements=["tenant", "payment_id"]).returning(PAYMENT.c.payment_id)
    )
    return result.first() is not None


async def list_payments(
    session: AsyncSession, tenant: str, *, invoice_id: str | None, after: tuple[datetime, str] | None, limit: int, account_id: str | None = None
) -> list[Any]:
    """Payments in the order they were recorded, after the keyset `after` (with `account_id`: that buyer's)."""
    query = of_account(select_scoped(PAYMENT, tenant), PAYMENT.c.account_id, account_id)
    if invoice_id is not None:
        query = query.where(PAYMENT.c.invoice_id == invoice_id)
    if after is not None:
        query = query.where(tuple_(PAYMENT.c.recorded_at, PAYMENT.c.payment_id) > tuple_(*after))
    query = query.order_by(PAYMENT.c.recorded_at, PAYMENT.c.payment_id).limit(limit)
    return list((await session.execute(query)).all())


async def reverse_payment(session: AsyncSession, tenant: str, payment_id: str) -> bool:
    """Mark a succeeded payment reversed (a direct debit returned after it was collected)."""
    result = await session.execute(
        scoped(update(PAYMENT), PAYMENT, tenant)
        .where(PAYMENT.c.payment_id == payment_id, PAYMENT.c.status == "succeeded")
        .values(status="reversed")
        .returning(PAYMENT.c.payment_id)
    )
    return result.first() is not None
