"""Every query on invoices, their lines and payments."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, scoped_pairs, select_scoped, tenant_owned
from invoicing.db import copy_rows, period_starting
from invoicing.invoice.models import Invoice, InvoiceLine, Payment, Refund

INVOICE: Table = tenant_owned(Invoice, "seller_id")
LINE: Table = InvoiceLine.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
PAYMENT: Table = tenant_owned(Payment, "seller_id")
REFUND: Table = tenant_owned(Refund, "seller_id")


async def find_for_period(session: AsyncSession, seller_id: str, buyer_account_id: str, start: date, end: date) -> str | None:
    return await session.scalar(
        select_scoped(INVOICE, seller_id, INVOICE.c.invoice_id).where(
            INVOICE.c.buyer_account_id == buyer_account_id,
            INVOICE.c.period_start == start,
            INVOICE.c.period_end == end,
        )
    )


async def insert_invoice(session: AsyncSession, *, invoice: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    await session.execute(insert(INVOICE).values(**invoice))
    if lines:
        await session.execute(insert(LINE), lines)


async def get_invoice(session: AsyncSession, seller_id: str, invoice_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's invoice; with `buyer_account_id` (a key restricted to one account), only if it is that buyer's."""
    query = of_account(select_scoped(INVOICE, seller_id).where(INVOICE.c.invoice_id == invoice_id), INVOICE.c.buyer_account_id, buyer_account_id)
    return (await session.execute(query)).first()


async def get_lines(session: AsyncSession, invoice_id: str) -> list[Any]:
    # Lines have no tenant column: they are read by the id of an invoice the caller read scoped.
    return list((await session.execute(select(LINE).where(LINE.c.invoice_id == invoice_id).order_by(LINE.c.position))).all())


async def list_invoices(
    session: AsyncSession,
    seller_id: str,
    *,
    buyer_account_id: str | None,
    status: str | None,
    period_from: date | None,
    period_until: date | None,
    before_seq: int | None,
    limit: int,
) -> list[Any]:
    """Newest number first; `before_seq` is the keyset cursor."""
    query = select_scoped(INVOICE, seller_id).order_by(INVOICE.c.seq.desc()).limit(limit)
    query = period_starting(of_account(query, INVOICE.c.buyer_account_id, buyer_account_id), INVOICE, period_from, period_until)
    if status is not None:
        query = query.where(INVOICE.c.status == status)
    if before_seq is not None:
        query = query.where(INVOICE.c.seq < before_seq)
    return list((await session.execute(query)).all())


async def lock_invoice(session: AsyncSession, seller_id: str, invoice_id: str) -> Any:
    return (await session.execute(select_scoped(INVOICE, seller_id).where(INVOICE.c.invoice_id == invoice_id).with_for_update())).first()


async def insert_payment(session: AsyncSession, row: dict[str, Any]) -> bool:
    """True when this payment id was not recorded before."""
    result = await session.execute(pg_insert(PAYMENT).values(**row).on_conflict_do_nothing(index_elements=["payment_id"]).returning(PAYMENT.c.payment_id))
    return result.first() is not None


async def record_paid(session: AsyncSession, seller_id: str, invoice_id: str, amount_paid: Decimal, *, paid_on: date | None) -> None:
    """Set the amount paid; with `paid_on`, the invoice is paid in full as of that date."""
    values: dict[str, Any] = {"amount_paid": amount_paid}
    if paid_on is not None:
        values.update(status="paid", paid_on=paid_on)
    await session.execute(scoped(update(INVOICE), INVOICE, seller_id).where(INVOICE.c.invoice_id == invoice_id).values(**values))


async def record_credit(
    session: AsyncSession, seller_id: str, invoice_id: str, credited_total: Decimal, *, status: str, paid_on: date | None, voided_on: date | None
) -> None:
    """Set the credited total and the status it leads to."""
    values: dict[str, Any] = {"credited_total": credited_total, "status": status}
    if paid_on is not None:
        values["paid_on"] = paid_on
    if voided_on is not None:
        values["voided_on"] = voided_on
    await session.execute(scoped(update(INVOICE), INVOICE, seller_id).where(INVOICE.c.invoice_id == invoice_id).values(**values))


async def get_payment(session: AsyncSession, seller_id: str, payment_id: str) -> Any:
    return (await session.execute(select_scoped(PAYMENT, seller_id).where(PAYMENT.c.payment_id == payment_id))).first()


async def refunded_on_payment(session: AsyncSession, seller_id: str, payment_id: str) -> Decimal:
    total = await session.scalar(select_scoped(REFUND, seller_id, func.coalesce(func.sum(REFUND.c.amount), 0)).where(REFUND.c.payment_id == payment_id))
    return Decimal(total or 0)


async def refund_recorded(session: AsyncSession, seller_id: str, refund_id: str) -> bool:
    return (await session.scalar(select_scoped(REFUND, seller_id, REFUND.c.refund_id).where(REFUND.c.refund_id == refund_id))) is not None


async def insert_refund(session: AsyncSession, row: dict[str, Any]) -> bool:
    """True when this refund id was not recorded before."""
    result = await session.execute(pg_insert(REFUND).values(**row).on_conflict_do_nothing(index_elements=["refund_id"]).returning(REFUND.c.refund_id))
    return result.first() is not None


async def record_refund(session: AsyncSession, seller_id: str, invoice_id: str, amount_paid: Decimal, *, reopen: bool) -> None:
    """Lower the amount paid; `reopen`: the invoice is owed again (open, no paid date)."""
    values: dict[str, Any] = {"amount_paid": amount_paid}
    if reopen:
        values.update(status="open", paid_on=None)
    await session.execute(scoped(update(INVOICE), INVOICE, seller_id).where(INVOICE.c.invoice_id == invoice_id).values(**values))


async def issued_among(session: AsyncSession, seller_ids: list[str], invoice_ids: list[str]) -> set[str]:
    """Which of these invoice ids (each of its seller, `seller_ids[i]`) are issued already: one query for a batch."""
    if not invoice_ids:
        return set()
    rows = await session.execute(scoped_pairs(select(INVOICE.c.invoice_id), INVOICE, INVOICE.c.invoice_id, list(zip(seller_ids, invoice_ids, strict=True))))
    return {row[0] for row in rows}


async def copy_invoices(session: AsyncSession, invoices: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    """Store a batch of new invoices and their lines: one COPY each."""
    await copy_rows(session, INVOICE, invoices)
    await copy_rows(session, LINE, lines)
