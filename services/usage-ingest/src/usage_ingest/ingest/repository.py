"""Every query of usage-ingest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ARRAY, Table, Text, any_, bindparam, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from billing_runtime.tenancy import select_scoped, tenant_owned
from usage_ingest.ingest.models import Customer, Order, OrderChange, QuantityObservation, UsageRecord

CUSTOMER: Table = tenant_owned(Customer, "tenant")
ORDER: Table = tenant_owned(Order, "tenant")
CHANGE: Table = tenant_owned(OrderChange, "tenant")
USAGE: Table = tenant_owned(UsageRecord, "tenant")
QUANTITY: Table = tenant_owned(QuantityObservation, "tenant")


async def account_ids(session: AsyncSession, tenant: str, external_ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(external_ids))
    if not ids:
        return {}
    query = select(CUSTOMER.c.external_id, CUSTOMER.c.account_id).where(CUSTOMER.c.tenant == tenant, CUSTOMER.c.external_id == any_(_texts(ids)))
    return {r.external_id: r.account_id for r in await session.execute(query)}


async def existing(session: AsyncSession, table: Table, id_column: str, tenant: str, ids: Sequence[str]) -> dict[str, Any]:
    """Rows already stored for these ids, by id (one statement, the ids as one array parameter)."""
    if not ids:
        return {}
    rows = await session.execute(select(table).where(table.c.tenant == tenant, table.c[id_column] == any_(_texts(list(ids)))))
    return {getattr(r, id_column): r for r in rows}


async def insert_new(session: AsyncSession, table: Table, id_column: str, rows: list[dict[str, Any]]) -> set[str]:
    """Insert rows whose id is not there yet, in one `INSERT … SELECT FROM unnest(…)` statement;
    returns the ids this call inserted (a concurrent request that got there first keeps its own)."""
    if not rows:
        return set()
    names = tuple(rows[0])
    statement = _insert_unnest(table, id_column, names)
    jsonb = {name for name in names if isinstance(table.c[name].type, JSONB)}
    params = {
        f"p{i}": [None if row[name] is None else to_json(row[name]).decode() for row in rows] if name in jsonb else [row[name] for row in rows]
        for i, name in enumerate(names)
    }
    return {r[0] for r in await session.execute(statement, params)}


def _texts(ids: list[str]) -> Any:
    return bindparam("ids", ids, type_=ARRAY(Text))


@cache
def _insert_unnest(table: Table, id_column: str, names: tuple[str, ...]) -> TextClause:
    dialect = postgresql.dialect()
    columns = ", ".join(f'"{n}"' for n in names)
    arrays = ", ".join(f"CAST(:p{i} AS {table.c[n].type.compile(dialect=dialect)}[])" for i, n in enumerate(names))
    return text(
        f'INSERT INTO "{table.schema}"."{table.name}" ({columns}) SELECT {columns} FROM unnest({arrays}) AS r({columns}) '
        f'ON CONFLICT (tenant, "{id_column}") DO NOTHING RETURNING "{id_column}"'
    )


async def upsert_customer(session: AsyncSession, row: dict[str, Any]) -> tuple[int, bool]:
    """Insert or update one customer; returns (revision, changed)."""
    insert = pg_insert(CUSTOMER).values(**row, revision=1)
    stmt = insert.on_conflict_do_update(
        index_elements=["tenant", "external_id"],
        set_={
            **{k: insert.excluded[k] for k in row if k not in ("tenant", "external_id", "account_id")},
            "revision": CUSTOMER.c.revision + 1,
        },
        where=CUSTOMER.c.content_hash != insert.excluded.content_hash,
    ).returning(CUSTOMER.c.revision)
    revision = (await session.execute(stmt)).scalar()
    if revision is None:
        current = await session.scalar(select(CUSTOMER.c.revision).where(CUSTOMER.c.tenant == row["tenant"], CUSTOMER.c.external_id == row["external_id"]))
        return int(current or 0), False
    return int(revision), True


async def get_customer(session: AsyncSession, tenant: str, external_id: str) -> Any:
    return (await session.execute(select_scoped(CUSTOMER, tenant).where(CUSTOMER.c.external_id == external_id))).first()


async def customer_by_account(session: AsyncSession, tenant: str, account_id: str, *, lock: bool = False) -> Any:
    """The tenant's customer whose billing account this is (another tenant's finds nothing)."""
    query = select_scoped(CUSTOMER, tenant).where(CUSTOMER.c.account_id == account_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def list_customers(session: AsyncSession, tenant: str, after: str | None, limit: int) -> list[Any]:
    query = select(CUSTOMER).where(CUSTOMER.c.tenant == tenant).order_by(CUSTOMER.c.external_id).limit(limit)
    if after:
        query = query.where(CUSTOMER.c.external_id > after)
    return list((await session.execute(query)).all())


async def get_row(session: AsyncSession, table: Table, id_column: str, tenant: str, record_id: str) -> Any:
    return (await session.execute(select_scoped(table, tenant).where(table.c[id_column] == record_id))).first()


__all__ = ["CHANGE", "CUSTOMER", "ORDER", "QUANTITY", "USAGE"]


async def cancelled_orders(session: AsyncSession, tenant: str, order_ids: Sequence[str]) -> set[str]:
    """Which of these orders' subscriptions are cancelled, in one statement."""
    if not order_ids:
        return set()
    query = select(CHANGE.c.order_id).where(CHANGE.c.tenant == tenant, CHANGE.c.kind == "cancellation", CHANGE.c.order_id == any_(_texts(list(order_ids))))
    return {r.order_id for r in await session.execute(query)}
