"""Gapless invoice numbers per seller (BILLING-RULES §7).

A number is taken from the seller's counter row inside the transaction that issues the invoice,
with the row locked (SELECT ... FOR UPDATE) until that transaction ends. Two issues for one seller
therefore run one after the other, and a transaction that rolls back also rolls back its counter
update: no number is skipped or used twice.

A batch of invoices (`reserve_batch`) locks the counters of all its sellers in one statement, in
seller id order, takes its numbers in memory and writes every counter back in one statement, all in
the issuing transaction: the same guarantee for a whole batch at the cost of two statements.
"""

from __future__ import annotations

from collections.abc import Sequence

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


class BatchReservation:
    """Several sellers' counters, locked for this transaction: `take(seller)` allocates the next
    number of that seller in memory, `write()` stores every counter that moved, in one statement.
    Only numbers actually given to an invoice may be taken: a taken number is used."""

    def __init__(self, session: AsyncSession, last: dict[str, int], table: Table = repo.COUNTER) -> None:
        self._session = session
        self._table = table
        self._last = dict(last)
        self._moved: set[str] = set()

    def last_seq(self, seller_id: str) -> int:
        return self._last[seller_id]

    def take(self, seller_id: str) -> int:
        self._last[seller_id] += 1
        self._moved.add(seller_id)
        return self._last[seller_id]

    async def write(self) -> None:
        await repo.set_lasts(self._session, {s: self._last[s] for s in sorted(self._moved)}, self._table)
        self._moved.clear()


async def reserve_batch(session: AsyncSession, seller_ids: Sequence[str]) -> BatchReservation:
    """Lock the counters of every seller in `seller_ids` for the rest of the transaction (one statement).

    As with `reserve`, taken before checking which invoices exist already."""
    return BatchReservation(session, await repo.lock_counters(session, seller_ids))


def format_credit_note_number(prefix: str, seq: int) -> str:
    """`NW`, 1 → `NW-CN-000001`."""
    return f"{prefix}-CN-{seq:06d}"


async def reserve_credit_note(session: AsyncSession, seller_id: str) -> NumberReservation:
    """Lock the seller's credit note counter for the rest of the transaction."""
    table = repo.CREDIT_NOTE_COUNTER
    return NumberReservation(session, seller_id, await repo.lock_counter(session, seller_id, table), table)
