"""The one way a service wires its consumers (`consume`) and its periodic work (`every`), and the
migration helper that creates the runtime's tables. Real PostgreSQL (and Tansu for the producer)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from prometheus_client import REGISTRY
from sqlalchemy import Connection, inspect, text

from billing_events import CloudEvent, CustomerUpserted, ProductPublished
from billing_runtime.config import CommonSettings
from billing_runtime.db import schema_metadata
from billing_runtime.service import ServiceRuntime, add_runtime_tables, drop_runtime_tables, runtime_tables
from billing_runtime.tasks import cancel
from billing_runtime.testing import eventually


def toy_runtime(database_url: str, kafka_bootstrap: str = "127.0.0.1:1") -> ServiceRuntime:
    schema = f"toy_{uuid.uuid4().hex[:8]}"
    metadata = schema_metadata(schema)
    runtime_tables(metadata)
    return ServiceRuntime(f"toy-{schema}", CommonSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap), metadata)


async def on_customer(runtime: ServiceRuntime, session: Any, event: CloudEvent[CustomerUpserted]) -> None:
    return None


async def on_customers(runtime: ServiceRuntime, session: Any, events: list[CloudEvent[CustomerUpserted]]) -> None:
    return None


async def test_consume_registers_every_handler_bound_to_the_runtime_and_refuses_a_model_handled_twice(database_url: str) -> None:
    runtime = toy_runtime(database_url)
    try:
        runtime.consume({CustomerUpserted: on_customer}, batch={ProductPublished: on_customers})
        single, batch = runtime.routes[CustomerUpserted.event_type], runtime.routes[ProductPublished.event_type]
        assert single.handler is not None and single.batch_handler is None and single.handler.args == (runtime,)  # type: ignore[attr-defined]
        assert batch.batch_handler is not None and batch.handler is None and batch.batch_handler.args == (runtime,)  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="two handlers of CustomerUpserted"):
            runtime.consume(batch={CustomerUpserted: on_customers})
        other = toy_runtime(database_url)
        with pytest.raises(ValueError, match="two handlers of CustomerUpserted"):
            other.consume({CustomerUpserted: on_customer}, {CustomerUpserted: on_customer})
        await other.engine.dispose()
    finally:
        await runtime.engine.dispose()


def runs(runtime: ServiceRuntime, task: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("billing_periodic_runs_total", {"service": runtime.name, "task": task, "outcome": outcome}) or 0.0


async def test_every_counts_a_failing_run_and_goes_on_and_runs_again_at_once_when_there_is_more(database_url: str) -> None:
    runtime = toy_runtime(database_url)
    flaky: list[str] = []
    busy: list[str] = []

    async def flaky_run() -> None:
        flaky.append("run")
        if len(flaky) == 1:
            raise RuntimeError("the database is away")

    async def busy_run() -> bool:
        busy.append("run")
        return len(busy) < 3  # found more twice: three runs back to back

    runtime.every("flaky", 0.0, flaky_run)
    # An hour between runs: the second and third can only come because the run before asked for them.
    runtime.every("busy", 3600.0, busy_run)
    assert runs(runtime, "flaky", "failed") == 0 and runs(runtime, "flaky", "ok") == 0  # known at 0 before the first run
    tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(loop()) for _, loop in runtime.background]
    try:
        await eventually(lambda: len(flaky) >= 3 and len(busy) == 3, "the runs after a failed one, and three busy runs")
        assert runs(runtime, "flaky", "failed") == 1
        await eventually(lambda: runs(runtime, "flaky", "ok") >= 2 and runs(runtime, "busy", "ok") == 3, "the good runs counted")
        assert runs(runtime, "busy", "failed") == 0
    finally:
        for task in tasks:
            await cancel(task)
        await runtime.engine.dispose()
    assert len(busy) == 3  # the third found nothing more: the loop waited its hour


def _columns(connection: Connection, schema: str) -> dict[str, Any]:
    found = inspect(connection)
    return {
        table: (
            sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c["default"]).replace(schema, "S") if c["default"] else None)
                for c in found.get_columns(table, schema)
            ),
            found.get_pk_constraint(table, schema)["constrained_columns"],
            sorted((i["name"], tuple(i["column_names"]), str(i.get("dialect_options", {}).get("postgresql_where"))) for i in found.get_indexes(table, schema)),
            sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table, schema)),
        )
        for table in ("outbox", "inbox")
    }


async def test_add_runtime_tables_creates_the_tables_the_runtime_declares(database_url: str) -> None:
    runtime = toy_runtime(database_url)
    migrated, declared = f"mig_{uuid.uuid4().hex[:8]}", f"dec_{uuid.uuid4().hex[:8]}"
    try:
        async with runtime.engine.begin() as conn:
            for schema in (migrated, declared):
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(lambda c: add_runtime_tables(Operations(MigrationContext.configure(c)), migrated))
            await conn.run_sync(lambda c: add_runtime_tables(Operations(MigrationContext.configure(c)), migrated))  # again: nothing to do
            metadata = schema_metadata(declared)
            runtime_tables(metadata)
            await conn.run_sync(metadata.create_all)
            assert await conn.run_sync(_columns, migrated) == await conn.run_sync(_columns, declared)
            await conn.run_sync(lambda c: drop_runtime_tables(Operations(MigrationContext.configure(c)), migrated))
            assert await conn.run_sync(lambda c: inspect(c).get_table_names(migrated)) == []
    finally:
        async with runtime.engine.begin() as conn:
            for schema in (migrated, declared):
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await runtime.engine.dispose()
