"""Gapless invoice numbers per seller (BILLING-RULES §7).

A number is taken from the seller's counter row inside the transaction that issues the invoice,
with the row locked (SELECT ... FOR UPDATE) until that transaction ends. Two issues for one seller
therefore run one after the other, and a transaction that rolls back also rolls back its counter
update: no number is skipped or used twice.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing.numbering import repository as repo


def format_number(prefix: str, seq: int) -> str:
    """`NW`, 1 → `NW-000001`. Past 999999 the number simply grows wider."""
    return f"{prefix}-{seq:06d}"


class NumberReservation:
    """The seller's counter, locked for this transaction; `take()` allocates the next number."""

    def __init__(self, session: AsyncSession, seller_id: str, last_seq: int, table: Table = repo.COUNTER) -> None:
        self._session = session
        self._table = table
        self.seller_id = seller_id
        self.last_seq = last_seq

    async def take(self) -> int:
        """The next sequence number, written back to the counter in the caller's transaction."""
        self.last_seq += 1
        await repo.set_last(self._session, self.seller_id, self.last_seq, self._table)
        return self.last_seq


async def reserve(session: AsyncSession, seller_id: str) -> NumberReservation:
    """Lock the seller's counter for the rest of the transaction.

    Taken before checking whether an invoice already exists, so the check sees every invoice a
    concurrent issuer of the same seller committed.
    """
    return NumberReservation(session, seller_id, await repo.lock_counter(session, seller_id))


def format_credit_note_number(prefix: str, seq: int) -> str:
    """`NW`, 1 → `NW-CN-000001`."""
    return f"{prefix}-CN-{seq:06d}"


async def reserve_credit_note(session: AsyncSession, seller_id: str) -> NumberReservation:
    """Lock the seller's credit note counter for the rest of the transaction."""
    table = repo.CREDIT_NOTE_COUNTER
    return NumberReservation(session, seller_id, await repo.lock_counter(session, seller_id, table), table)
