from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from billing_runtime.service import service_schema

SCHEMA = "invoicing"
# With the idempotency (Idempotency-Key replays) and audit tables of billing_runtime.conventions (migration 0007).
registry, metadata, outbox, inbox, idempotency, audit = service_schema(SCHEMA)


class Base(SQLModel, registry=registry):
    pass


async def copy_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Write `rows` (dicts with the same keys) into `table` with COPY, in the session's transaction.

    The fastest way Postgres takes many rows: one round trip and no statement to compile. No ON
    CONFLICT: the caller knows the rows are new. The transaction must have started (a statement
    ran in it before): COPY joins it then."""
    if not rows:
        return
    columns = list(rows[0])
    jsonb = {name for name in columns if isinstance(table.c[name].type, JSONB)}
    records = [tuple(json.dumps(row[c]) if c in jsonb else row[c] for c in columns) for row in rows]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(table.name, schema_name=table.schema, columns=columns, records=records)


def period_starting(query: Select[Any], table: Table, period_from: date | None, period_until: date | None) -> Select[Any]:
    """`query` limited to `table`'s rows whose period starts on or after `period_from` and before
    `period_until`, each bound when given (a listing's `period=YYYY-MM`)."""
    if period_from is not None:
        query = query.where(table.c.period_start >= period_from)
    if period_until is not None:
        query = query.where(table.c.period_start < period_until)
    return query
