"""What several of billing_runtime's test modules build: a CustomerUpserted, and the throwaway
service that counts, per tenant, the ones it applies."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Column, Integer, String, Table, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted
from billing_events.testing import make_customer
from billing_runtime.db import schema_metadata
from billing_runtime.service import ServiceRuntime, runtime_tables


def customer(tenant: str, name: str = "Contoso", revision: int = 1, external_id: str = "c1") -> CustomerUpserted:
    return make_customer(tenant, external_id, name=name, billing_email="ap@contoso.example", revision=revision)


class TallyToy:
    """A throwaway service in a schema of its own, counting the CustomerUpserted events it applies
    per tenant (`tally`); an event whose customer is named in `fail_names` makes its handler fail.
    A subclass builds `runtime` and routes the events to `count`."""

    runtime: ServiceRuntime

    def __init__(self, **tables: Any) -> None:
        self.schema = f"toy_{uuid.uuid4().hex[:8]}"
        self.metadata = schema_metadata(self.schema)
        self.tally = Table("tally", self.metadata, Column("tenant", String, primary_key=True), Column("applied", Integer, nullable=False))
        runtime_tables(self.metadata, **tables)
        self.fail_names: set[str] = set()

    async def count(self, session: AsyncSession, event: CloudEvent[Any]) -> None:
        if event.data.name in self.fail_names:
            raise RuntimeError(f"cannot apply {event.data.name}")
        stmt = pg_insert(self.tally).values(tenant=event.tenant, applied=1)
        await session.execute(stmt.on_conflict_do_update(index_elements=["tenant"], set_={"applied": self.tally.c.applied + 1}))

    async def create(self) -> None:
        async with self.runtime.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            await conn.run_sync(self.metadata.create_all)

    async def applied(self, tenant: str) -> int:
        async with self.runtime.sessions() as session:
            return int(await session.scalar(select(self.tally.c.applied).where(self.tally.c.tenant == tenant)) or 0)
