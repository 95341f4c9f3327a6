from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import TextClause
from sqlmodel import SQLModel

from billing_runtime.service import service_schema

SCHEMA = "rating"
registry, metadata, outbox, inbox, idempotency, audit = service_schema(SCHEMA)


class Base(SQLModel, registry=registry):
    pass


def unnest_insert(table: Table, columns: tuple[str, ...], on_conflict: str) -> TextClause:
    """`INSERT … SELECT * FROM unnest(…)` of `columns`, each bound as one array of its column's
    type named after it (`by_column`): one cached statement whatever the number of rows, and no
    parameter limit. `on_conflict` may name the table as `t`."""
    dialect = postgresql.dialect()
    arrays = ", ".join(f"CAST(:{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns)
    return text(f'INSERT INTO "{table.schema}"."{table.name}" AS t ({", ".join(columns)}) SELECT * FROM unnest({arrays}) {on_conflict}')


def by_column(rows: Sequence[dict[str, Any]], columns: tuple[str, ...]) -> dict[str, list[Any]]:
    """The parameters of an `unnest_insert` of `rows`: one list per column."""
    return {name: [row[name] for row in rows] for name in columns}
