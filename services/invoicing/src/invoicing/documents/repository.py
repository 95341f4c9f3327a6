"""Every query on rendered documents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped, select_scoped, tenant_owned
from invoicing.creditnote.models import CreditNote
from invoicing.documents.models import RenderedDocument
from invoicing.invoice.models import Invoice

DOCUMENT: Table = tenant_owned(RenderedDocument, "seller_id")
INVOICE: Table = tenant_owned(Invoice, "seller_id")
CREDIT_NOTE: Table = tenant_owned(CreditNote, "seller_id")


async def get(session: AsyncSession, seller_id: str, owner_kind: str, owner_id: str, fmt: str) -> bytes | None:
    query = select_scoped(DOCUMENT, seller_id, DOCUMENT.c.content)
    query = query.where(DOCUMENT.c.owner_kind == owner_kind, DOCUMENT.c.owner_id == owner_id, DOCUMENT.c.format == fmt)
    content: bytes | None = await session.scalar(query)
    return content


async def stored(
    session: AsyncSession, seller_id: str, owner_kind: str, owner_id: str, fmt: str, *, buyer_account_id: str | None = None
) -> tuple[str, bytes] | None:
    """(document number, bytes) of the seller's stored document, in one query: what a download of
    a document rendered before needs (the invoice email's attachment, most of all); with
    `buyer_account_id` (a key restricted to one account), only if it is that buyer's."""
    owner, owner_key = (INVOICE, INVOICE.c.invoice_id) if owner_kind == "invoice" else (CREDIT_NOTE, CREDIT_NOTE.c.credit_note_id)
    query = scoped(
        select_scoped(DOCUMENT, seller_id, owner.c.number, DOCUMENT.c.content)
        .join_from(DOCUMENT, owner, owner_key == DOCUMENT.c.owner_id)
        .where(DOCUMENT.c.owner_kind == owner_kind, DOCUMENT.c.owner_id == owner_id, DOCUMENT.c.format == fmt),
        owner,
        seller_id,
    )
    query = of_account(query, owner.c.buyer_account_id, buyer_account_id)
    row = (await session.execute(query)).first()
    return (row.number, row.content) if row is not None else None


async def store(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Keep the first rendering: a concurrent one that lost the race is dropped. Returns the
    formats this call stored (the others were there already)."""
    result = await session.execute(
        pg_insert(DOCUMENT).values(rows).on_conflict_do_nothing(index_elements=["owner_kind", "owner_id", "format"]).returning(DOCUMENT.c.format)
    )
    return set(result.scalars())
