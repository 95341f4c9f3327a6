"""Every query on rendered documents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from invoicing.documents.models import RenderedDocument

DOCUMENT: Table = RenderedDocument.__table__  # type: ignore[attr-defined]


async def get(session: AsyncSession, owner_kind: str, owner_id: str, fmt: str) -> bytes | None:
    query = select(DOCUMENT.c.content).where(DOCUMENT.c.owner_kind == owner_kind, DOCUMENT.c.owner_id == owner_id, DOCUMENT.c.format == fmt)
    content: bytes | None = await session.scalar(query)
    return content


async def store(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Keep the first rendering: a concurrent one that lost the race is dropped."""
    await session.execute(pg_insert(DOCUMENT).values(rows).on_conflict_do_nothing(index_elements=["owner_kind", "owner_id", "format"]))
