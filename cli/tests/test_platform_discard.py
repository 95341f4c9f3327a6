"""A throwaway platform (a benchmark's: `fresh_database`) leaves nothing behind once discarded:
neither its database on the PostgreSQL server it was given nor its state folder, also when its
start got no further than the database."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg

from billing_cli.platform import Platform


async def databases_named(server: str, name: str) -> list[str]:
    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname = $1", name)]
    finally:
        await conn.close()


def test_a_discarded_platform_leaves_no_database_and_no_state_folder(postgres_server: str, tmp_path: Path) -> None:
    state = tmp_path / "billing-bench-discard"
    (state / "logs").mkdir(parents=True)
    name = f"billing_bench_{uuid.uuid4().hex[:6]}"
    platform = Platform(state_dir=state, env={"DATABASE_URL": postgres_server}, database_name=name, fresh_database=True, quiet=True)
    platform._start_postgres()  # as a benchmark starts it; then it fails, or finishes
    assert asyncio.run(databases_named(postgres_server, name)) == [name]
    platform.discard()
    assert asyncio.run(databases_named(postgres_server, name)) == []
    assert not state.exists()
    platform.discard()  # twice: nothing left to remove, no error
