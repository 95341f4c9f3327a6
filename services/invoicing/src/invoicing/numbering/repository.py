"""Every query on the number counters."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, tenant_owned
from invoicing.numbering.models import CreditNoteNumberCounter, InvoiceNumberCounter

# One counter row per seller, keyed by the seller's id (its tenant): the upserts below insert the
# tenant's own row; the batch statements name each seller of the batch (its tenant) explicitly.
COUNTER: Table = tenant_owned(InvoiceNumberCounter, "seller_id")
CREDIT_NOTE_COUNTER: Table = tenant_owned(CreditNoteNumberCounter, "seller_id")


async def lock_counter(session: AsyncSession, seller_id: str, table: Table = COUNTER) -> int:
    """The seller's last sequence number, with its counter row locked until the transaction ends.

    One statement: the no-op update on conflict takes the row lock as SELECT ... FOR UPDATE would,
    and creates the row for a seller's first invoice."""
    insert = pg_insert(table).values(seller_id=seller_id, last_seq=0)
    upsert = insert.on_conflict_do_update(index_elements=["seller_id"], set_={"last_seq": table.c.last_seq}).returning(table.c.last_seq)
    last = await session.scalar(upsert)
    return int(last or 0)


async def set_last(session: AsyncSession, seller_id: str, seq: int, table: Table = COUNTER) -> None:
    await session.execute(scoped(update(table), table, seller_id).values(last_seq=seq))


async def lock_counters(session: AsyncSession, seller_ids: Sequence[str], table: Table = COUNTER) -> dict[str, int]:
    """Every seller's last sequence number, each counter row locked until the transaction ends, in
    one statement (rows created for a seller's first invoice).

    The rows are locked in seller id order, so two batches over overlapping sellers queue on the
    first seller they share instead of deadlocking."""
    ids = sorted(set(seller_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text(
            f"INSERT INTO {table.fullname} AS c (seller_id, last_seq)"
            " SELECT s, 0 FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS u(s, n) ORDER BY n"
            " ON CONFLICT (seller_id) DO UPDATE SET last_seq = c.last_seq"
            " RETURNING c.seller_id, c.last_seq"
        ),
        {"ids": ids},
    )
    return {seller_id: int(last) for seller_id, last in rows.all()}


async def set_lasts(session: AsyncSession, last: dict[str, int], table: Table = COUNTER) -> None:
    """Write several sellers' counters back in one statement."""
    if not last:
        return
    ids = list(last)
    await session.execute(
        text(
            f"UPDATE {table.fullname} AS c SET last_seq = v.last_seq"
            " FROM unnest(CAST(:ids AS text[]), CAST(:lasts AS bigint[])) AS v(seller_id, last_seq)"
            " WHERE c.seller_id = v.seller_id"
        ),
        {"ids": ids, "lasts": [last[i] for i in ids]},
    )
