from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from billing_runtime.service import service_schema

SCHEMA = "dunning"
registry, metadata, outbox, inbox, idempotency, audit = service_schema(SCHEMA)


class Base(SQLModel, registry=registry):
    pass


async def read_snapshot(session: AsyncSession) -> None:
    """Make the session's transaction, not begun yet, one read-only snapshot (REPEATABLE READ):
    every statement sees the database as of the first, so a read made of several statements
    cannot mix what a writer committed between them with what it saw before. Read only, it never
    fails to serialise; the pool resets the connection's isolation when it is given back."""
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
