"""Every query on refunds, applied credit notes, bank accounts and refund files."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from payments.payment.models import Payment
from payments.refund.models import BankAccount, CreditNoteApplied, Refund, RefundFile

REFUND: Table = tenant_owned(Refund, "tenant")
APPLIED: Table = tenant_owned(CreditNoteApplied, "tenant")
BANK_ACCOUNT: Table = tenant_owned(BankAccount, "tenant")
REFUND_FILE: Table = tenant_owned(RefundFile, "tenant")
PAYMENT: Table = tenant_owned(Payment, "tenant")


async def claim_credit_note(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Record that a credit note is being acted on; False if it was before."""
    result = await session.execute(pg_insert(APPLIED).values(**row).on_conflict_do_nothing().returning(APPLIED.c.credit_note_id))
    return result.first() is not None


async def refundable_payments(session: AsyncSession, tenant: str, invoice_id: str) -> list[Any]:
    """The invoice's succeeded payments, newest first, each with what is not yet refunded (or being refunded)."""
    refunded = (
        select(func.coalesce(func.sum(REFUND.c.amount), 0))
        .where(REFUND.c.tenant == PAYMENT.c.tenant, REFUND.c.payment_id == PAYMENT.c.payment_id, REFUND.c.status != "failed")
        .scalar_subquery()
    )
    query = (
        select_scoped(
            PAYMENT, tenant, PAYMENT.c.payment_id, PAYMENT.c.method, PAYMENT.c.provider, PAYMENT.c.currency, (PAYMENT.c.amount - refunded).label("refundable")
        )
        .where(PAYMENT.c.invoice_id == invoice_id, PAYMENT.c.status == "succeeded")
        .order_by(PAYMENT.c.recorded_at.desc(), PAYMENT.c.payment_id.desc())
    )
    return list((await session.execute(query)).all())


async def insert_refunds(session: AsyncSession, rows: list[dict[str, Any]]) -> list[str]:
    """Insert refunds (one multi-row statement); the ids newly written (a repeat writes nothing)."""
    if not rows:
        return []
    result = await session.execute(pg_insert(REFUND).values(rows).on_conflict_do_nothing().returning(REFUND.c.refund_id))
    return [r.refund_id for r in result]


async def get_refund(session: AsyncSession, tenant: str, refund_id: str, *, lock: bool = False) -> Any:
    query = select_scoped(REFUND, tenant).where(REFUND.c.refund_id == refund_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def refund_by_ref(session: AsyncSession, tenant: str, provider: str, provider_ref: str) -> Any:
    query = select_scoped(REFUND, tenant).where(REFUND.c.provider == provider, REFUND.c.provider_ref == provider_ref).with_for_update()
    return (await session.execute(query)).first()


async def next_refund_to_call(session: AsyncSession, now: datetime) -> Any:
    """One refund the provider (or the SEPA file writer) must act on; locked, others skip it."""
    due = or_(REFUND.c.next_call_at.is_(None), REFUND.c.next_call_at <= now)
    query = (
        select(REFUND)
        .where(REFUND.c.status.in_(["pending", "unknown"]), REFUND.c.provider_ref.is_(None), due)
        .order_by(REFUND.c.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).first()


async def update_refund(session: AsyncSession, refund_id: str, **values: Any) -> None:
    await session.execute(update(REFUND).where(REFUND.c.refund_id == refund_id).values(**values))


async def refunds_of(session: AsyncSession, tenant: str, invoice_id: str) -> list[Any]:
    query = select_scoped(REFUND, tenant).where(REFUND.c.invoice_id == invoice_id).order_by(REFUND.c.created_at, REFUND.c.refund_id)
    return list((await session.execute(query)).all())


async def put_bank_account(session: AsyncSession, row: dict[str, Any]) -> None:
    statement = pg_insert(BANK_ACCOUNT).values(**row)
    changed = {k: statement.excluded[k] for k in ("name", "iban", "bic", "updated_at")}
    await session.execute(statement.on_conflict_do_update(index_elements=["tenant", "owner"], set_=changed))


async def keep_bank_account(session: AsyncSession, row: dict[str, Any]) -> None:
    """Store a bank account unless its owner has one already (one the seller entered wins)."""
    await session.execute(pg_insert(BANK_ACCOUNT).values(**row).on_conflict_do_nothing())


async def get_bank_account(session: AsyncSession, tenant: str, owner: str) -> Any:
    return (await session.execute(select_scoped(BANK_ACCOUNT, tenant).where(BANK_ACCOUNT.c.owner == owner))).first()


async def insert_refund_file(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(pg_insert(REFUND_FILE).values(**row).on_conflict_do_nothing())


async def get_refund_file(session: AsyncSession, tenant: str, file_id: str) -> Any:
    return (await session.execute(select_scoped(REFUND_FILE, tenant).where(REFUND_FILE.c.file_id == file_id))).first()
