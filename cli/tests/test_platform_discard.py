"""A throwaway platform (a benchmark's: `fresh_database`) leaves nothing behind once discarded:
neither its database on the PostgreSQL server it was given nor its state folder, also when its
start got no further than the database."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from billing_cli.platform import Platform, isolated_env, port_free


async def databases_named(server: str, name: str) -> list[str]:
    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return [r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname = $1", name)]
    finally:
        await conn.close()


def test_a_discarded_platform_leaves_no_database_and_no_state_folder(postgres_server: str) -> None:
    platform = Platform.throwaway("billing-bench-discard-", {"DATABASE_URL": postgres_server}, quiet=True)
    state, name = platform.state_dir, platform.database_name
    assert (state / "logs").is_dir() and name.startswith("billing_bench_")
    platform._start_postgres()  # as a benchmark starts it; then it fails, or finishes
    assert asyncio.run(databases_named(postgres_server, name)) == [name]
    platform.discard()
    assert asyncio.run(databases_named(postgres_server, name)) == []
    assert not state.exists()
    platform.discard()  # twice: nothing left to remove, no error


def test_an_isolated_environment_has_its_own_broker_and_services_on_free_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    monkeypatch.setenv("AUTH_MODE", "api_key")
    env = isolated_env("BILLING_RATING_PORT", "BILLING_NOTIFY_PORT", AUTH_MODE="trusted_header", BILLING_RATING_WORKERS="2")
    assert "KAFKA_BOOTSTRAP_SERVERS" not in env
    assert (env["AUTH_MODE"], env["BILLING_RATING_WORKERS"]) == ("trusted_header", "2")
    ports = [int(env[name]) for name in ("BILLING_KAFKA_PORT", "BILLING_RATING_PORT", "BILLING_NOTIFY_PORT")]
    assert len(set(ports)) == 3 and all(port_free(port) for port in ports)
