"""Every query on the number counters."""

from __future__ import annotations

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing.numbering.models import CreditNoteNumberCounter, InvoiceNumberCounter

COUNTER: Table = InvoiceNumberCounter.__table__  # type: ignore[attr-defined]
CREDIT_NOTE_COUNTER: Table = CreditNoteNumberCounter.__table__  # type: ignore[attr-defined]


async def lock_counter(session: AsyncSession, seller_id: str, table: Table = COUNTER) -> int:
    """The seller's last sequence number, with its counter row locked until the transaction ends.

    One statement: the no-op update on conflict takes the row lock as SELECT ... FOR UPDATE would,
    and creates the row for a seller's first invoice."""
    insert = pg_insert(table).values(seller_id=seller_id, last_seq=0)
    upsert = insert.on_conflict_do_update(index_elements=["seller_id"], set_={"last_seq": table.c.last_seq}).returning(table.c.last_seq)
    last = await session.scalar(upsert)
    return int(last or 0)


async def set_last(session: AsyncSession, seller_id: str, seq: int, table: Table = COUNTER) -> None:
    await session.execute(update(table).where(table.c.seller_id == seller_id).values(last_seq=seq))
