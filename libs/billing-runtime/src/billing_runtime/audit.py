"""The append-only audit log of every write: who (API key id and tenant), what (method, path,
status, Idempotency-Key), the request body, and the resource before and after where the service
can show them. One table per service, in its own schema; a trigger refuses UPDATE and DELETE."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, insert
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

AUDIT_RECORDS = Counter("billing_audit_records_total", "Writes recorded in the audit log", ["service"])


def audit_table(metadata: MetaData) -> Table:
    return Table(
        "audit_log",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("tenant", String, nullable=False),
        Column("key_id", String, nullable=False),
        Column("method", String, nullable=False),
        Column("path", String, nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("idempotency_key", String, nullable=True),
        Column("request", JSONB(none_as_null=True), nullable=True),
        Column("before", JSONB(none_as_null=True), nullable=True),
        Column("after", JSONB(none_as_null=True), nullable=True),
        Index("ix_audit_log_tenant_occurred_at", "tenant", "occurred_at"),
    )


def append_only_sql(schema: str) -> list[str]:
    """The trigger that makes the table append-only (run by the migration that creates it)."""
    return [
        f'CREATE OR REPLACE FUNCTION "{schema}".audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS '
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        f'CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON "{schema}".audit_log '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".audit_log_append_only()',
    ]


async def record(conn: AsyncConnection, table: Table, **row: Any) -> None:
    await conn.execute(insert(table).values(**row))
