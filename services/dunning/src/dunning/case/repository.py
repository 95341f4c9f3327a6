"""Every query of dunning."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import ARRAY, String, Table, any_, bindparam, func, select, text, tuple_, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, select_scoped, tenant_owned
from dunning.case.models import CaseCredit, CasePayment, CasePaymentFailure, CaseStatus, DunningCase, InvoiceSettlement

CASE: Table = tenant_owned(DunningCase, "tenant")
PAYMENT: Table = tenant_owned(CasePayment, "tenant")
SETTLEMENT: Table = tenant_owned(InvoiceSettlement, "tenant")
FAILURE: Table = tenant_owned(CasePaymentFailure, "tenant")
CREDIT: Table = tenant_owned(CaseCredit, "tenant")


async def lock_invoice(session: AsyncSession, invoice_id: str) -> None:
    """Serialise everything about one invoice until the transaction ends. Its issue, payments and
    settlement come on different topics and may be applied at the same time by different
    replicas; without this, a payment stored while its case is being opened could be missed."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("dunning:" + invoice_id, 0))))


async def remember_once(session: AsyncSession, table: Table, row: dict[str, Any]) -> bool:
    """Lock the row's invoice (`lock_invoice`) and insert the fact it records (a payment, failure,
    credit note or settlement) once, by the table's primary key; True if it is new."""
    await lock_invoice(session, row["invoice_id"])
    keys = list(table.primary_key.columns)
    result = await session.execute(pg_insert(table).values(**row).on_conflict_do_nothing(index_elements=keys).returning(*keys))
    return result.first() is not None


async def lock_invoices(session: AsyncSession, invoice_ids: list[str]) -> None:
    """`lock_invoice` for a batch, in one statement, in the order of the lock keys (so two batches
    sharing invoices cannot deadlock)."""
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended('dunning:' || i, 0) AS k"
            " FROM unnest(CAST(:ids AS text[])) AS i ORDER BY k) AS keys"
        ),
        {"ids": invoice_ids},
    )


async def insert_cases(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """`insert_case` for a batch in one statement; the invoice ids whose case is new."""
    if not rows:
        return set()
    result = await session.execute(pg_insert(CASE).values(rows).on_conflict_do_nothing(index_elements=["invoice_id"]).returning(CASE.c.invoice_id))
    return set(result.scalars())


async def invoices_with_facts(session: AsyncSession, invoice_ids: list[str]) -> set[str]:
    """Which of these invoices already have a payment, a credit note or a settlement on record
    (facts that came before their issue)."""
    ids = bindparam("ids", invoice_ids, type_=ARRAY(String))
    found = union(
        select(PAYMENT.c.invoice_id).where(PAYMENT.c.invoice_id == any_(ids)),
        select(CREDIT.c.invoice_id).where(CREDIT.c.invoice_id == any_(ids)),
        select(SETTLEMENT.c.invoice_id).where(SETTLEMENT.c.invoice_id == any_(ids)),
    )
    return set((await session.execute(found)).scalars())


async def insert_case(session: AsyncSession, row: dict[str, Any]) -> bool:
    result = await session.execute(pg_insert(CASE).values(**row).on_conflict_do_nothing(index_elements=["invoice_id"]).returning(CASE.c.case_id))
    return result.first() is not None


async def case_of_invoice(session: AsyncSession, invoice_id: str) -> Any:
    return (await session.execute(select(CASE).where(CASE.c.invoice_id == invoice_id))).first()


async def payments_of_invoice(session: AsyncSession, tenant: str, invoice_id: str) -> list[Any]:
    query = select_scoped(PAYMENT, tenant).where(PAYMENT.c.invoice_id == invoice_id).order_by(PAYMENT.c.payment_id)
    return list((await session.execute(query)).all())


async def settlement_of_invoice(session: AsyncSession, tenant: str, invoice_id: str) -> Any:
    return (await session.execute(select_scoped(SETTLEMENT, tenant).where(SETTLEMENT.c.invoice_id == invoice_id))).first()


async def update_case(session: AsyncSession, case_id: str, **values: Any) -> None:
    await session.execute(update(CASE).where(CASE.c.case_id == case_id).values(**values))


async def list_cases(
    session: AsyncSession, tenant: str, *, status: str | None, account_id: str | None, after: tuple[date, str] | None, limit: int
) -> list[Any]:
    """Cases by due date (the most pressing first), after the keyset `after`."""
    query = of_account(select_scoped(CASE, tenant), CASE.c.account_id, account_id)
    if status is not None:
        query = query.where(CASE.c.status == status)
    if after is not None:
        query = query.where(tuple_(CASE.c.due_on, CASE.c.case_id) > tuple_(*after))
    return list((await session.execute(query.order_by(CASE.c.due_on, CASE.c.case_id).limit(limit))).all())


async def open_cases_of_account(session: AsyncSession, tenant: str, account_id: str) -> list[Any]:
    query = select_scoped(CASE, tenant).where(CASE.c.account_id == account_id, CASE.c.status == CaseStatus.OPEN.value)
    return list((await session.execute(query)).all())


async def credits_of_invoice(session: AsyncSession, tenant: str, invoice_id: str) -> list[Any]:
    query = select_scoped(CREDIT, tenant).where(CREDIT.c.invoice_id == invoice_id).order_by(CREDIT.c.credit_note_id)
    return list((await session.execute(query)).all())


async def last_failure_of_account(session: AsyncSession, tenant: str, account_id: str) -> Any:
    """The latest payment failure on an open case of the account."""
    query = (
        scoped(select(FAILURE).join(CASE, CASE.c.invoice_id == FAILURE.c.invoice_id), CASE, tenant)
        .where(CASE.c.account_id == account_id, CASE.c.status == CaseStatus.OPEN.value)
        .order_by(FAILURE.c.failed_on.desc(), FAILURE.c.payment_id.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()
