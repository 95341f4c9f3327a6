"""Every query on the invoice projection."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, select_scoped, tenant_owned
from payments.invoice.models import Invoice

INVOICE: Table = tenant_owned(Invoice, "tenant")


async def insert_invoice(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Store a newly issued invoice; False if it is already known. Another invoice with the same
    number for the same seller is an IntegrityError on purpose: the event is poison."""
    result = await session.execute(pg_insert(INVOICE).values(**row).on_conflict_do_nothing(index_elements=["invoice_id"]).returning(INVOICE.c.invoice_id))
    return result.first() is not None


async def insert_invoices(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """`insert_invoice` for a batch (distinct invoice ids) in one statement; the ids that are new."""
    if not rows:
        return set()
    result = await session.execute(pg_insert(INVOICE).values(rows).on_conflict_do_nothing(index_elements=["invoice_id"]).returning(INVOICE.c.invoice_id))
    return set(result.scalars())


async def get_invoice(session: AsyncSession, tenant: str, invoice_id: str) -> Any:
    return (await session.execute(select_scoped(INVOICE, tenant).where(INVOICE.c.invoice_id == invoice_id))).first()


async def lock_invoice(session: AsyncSession, tenant: str, *, invoice_id: str | None, number: str | None) -> Any:
    """The seller's invoice by id or number, locked until the transaction ends, so payments on
    one invoice are recorded one after the other and `amount_received` stays exact."""
    query = select_scoped(INVOICE, tenant).with_for_update()
    if invoice_id is not None:
        query = query.where(INVOICE.c.invoice_id == invoice_id)
    else:
        query = query.where(INVOICE.c.number == number)
    return (await session.execute(query)).first()


async def add_received(session: AsyncSession, invoice_id: str, amount: Decimal) -> None:
    await session.execute(update(INVOICE).where(INVOICE.c.invoice_id == invoice_id).values(amount_received=INVOICE.c.amount_received + amount))


async def seller_of(session: AsyncSession, tenant: str, account_id: str) -> str | None:
    """The seller account id on the buyer's latest invoice from this tenant."""
    query = select_scoped(INVOICE, tenant, INVOICE.c.seller_id).where(INVOICE.c.account_id == account_id).order_by(INVOICE.c.issued_on.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def add_credited(session: AsyncSession, invoice_id: str, amount: Decimal) -> None:
    await session.execute(update(INVOICE).where(INVOICE.c.invoice_id == invoice_id).values(amount_credited=INVOICE.c.amount_credited + amount))


async def open_invoices_of(session: AsyncSession, tenant: str, account_id: str | None = None) -> list[Any]:
    """The seller's invoices with money still open (optionally one buyer's), oldest first."""
    query = select_scoped(INVOICE, tenant).where(INVOICE.c.total - INVOICE.c.amount_credited - INVOICE.c.amount_received > 0)
    query = of_account(query, INVOICE.c.account_id, account_id)
    return list((await session.execute(query.order_by(INVOICE.c.issued_on, INVOICE.c.number))).all())


async def by_reference(session: AsyncSession, tenant: str, reference: str) -> Any:
    query = select_scoped(INVOICE, tenant).where(INVOICE.c.creditor_reference == reference).with_for_update()
    return (await session.execute(query)).first()
