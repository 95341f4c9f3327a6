"""What `billing` says when what it needs is missing: a line or two, no traceback unless `--debug`,
the documented exit code (billing_cli.errors); `billing up` refusing a taken port before it starts
anything; `billing lag` counting from the outboxes and inboxes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from billing_cli.errors import PROBLEM, STARTUP, UNREACHABLE
from billing_cli.main import main
from billing_cli.platform import SANDBOXES, SERVICES, listens_on
from billing_events import CloudEvent, new_event, to_kafka
from billing_events.testing import make_customer
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port
from billing_runtime.migrations import migrations_dir, upgrade
from billing_runtime.testing import migrate


def billing(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the `billing` command as its console script does; (exit code, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["billing", *args]
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def short_and_clean(message: str) -> None:
    assert "Traceback" not in message
    assert 1 <= len(message.strip().splitlines()) <= 2, message


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_up_refuses_a_taken_port_before_starting_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, listening: int, postgres_server: str
) -> None:
    for spec in SERVICES:
        monkeypatch.setenv(spec.port_env, str(free_port()))
    for sandbox in SANDBOXES:
        monkeypatch.setenv(sandbox.port_env, str(free_port()))
    monkeypatch.setenv("BILLING_KAFKA_PORT", str(free_port()))
    monkeypatch.setenv("BILLING_SMTP_PORT", str(free_port()))
    monkeypatch.setenv("BILLING_RATING_PORT", str(listening))
    monkeypatch.setenv("DATABASE_URL", postgres_server)
    state = tmp_path / "up"
    code, _, err = billing(capsys, "up", "--state-dir", str(state))
    assert code == STARTUP
    assert f"port {listening} (rating) is in use" in err and "set BILLING_RATING_PORT to a free port" in err
    assert "Traceback" not in err
    assert not state.exists()  # nothing started: no log, no broker, no database


def test_up_refuses_one_port_named_twice(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    same = str(free_port())
    for spec in SERVICES:
        monkeypatch.setenv(spec.port_env, str(free_port()))
    monkeypatch.setenv("BILLING_RATING_PORT", same)
    monkeypatch.setenv("BILLING_INVOICING_PORT", same)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("NOTIFY_SMTP_HOST", "127.0.0.1")
    for sandbox in SANDBOXES:
        monkeypatch.setenv(sandbox.payments_env, "http://127.0.0.1:1")
    code, _, err = billing(capsys, "up", "--state-dir", str(tmp_path / "up"))
    assert code == STARTUP and f"port {same} is wanted by both rating and invoicing: set BILLING_INVOICING_PORT" in err


def test_ready_counts_only_the_process_that_holds_the_port(listening: int) -> None:
    assert listens_on(os.getpid(), listening)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not listens_on(other.pid, listening)  # an answer on the port is not this process's
    finally:
        other.kill()
        other.wait()


def test_broker_down_is_two_lines_and_exit_3(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    migrate(database_url, *(spec.package for spec in SERVICES))  # the lag is counted there first; the broker is what is down
    nowhere = f"127.0.0.1:{free_port()}"
    code, _, err = billing(capsys, "lag", "--broker", "--database-url", database_url, "--bootstrap", nowhere)
    assert code == UNREACHABLE, err
    assert f"cannot reach the Kafka broker at {nowhere}" in err and "billing up" in err
    short_and_clean(err)
    # As a person runs it: the console script, the libraries' log lines included.
    command = [sys.executable, "-m", "billing_cli.main", "dead-letters", "--bootstrap", nowhere]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert plain.returncode == UNREACHABLE and f"cannot reach the Kafka broker at {nowhere}" in plain.stderr
    short_and_clean(plain.stderr)
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "KafkaConnectionError" in debug.stderr  # --debug: the whole story


def test_database_down_is_two_lines_and_exit_3(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"postgresql://billing:s3cret@127.0.0.1:{free_port()}/billing"
    monkeypatch.setenv("DATABASE_URL", down)
    for args in (("migrate",), ("lag",), ("keys", "list")):
        code, _, err = billing(capsys, *args)
        assert code == UNREACHABLE, err
        assert f"cannot reach PostgreSQL at postgresql://billing:***@127.0.0.1:{down.rsplit(':', 1)[1]}" in err and "DATABASE_URL" in err
        assert "s3cret" not in err
        short_and_clean(err)


def test_lag_counts_published_events_the_inbox_has_not_applied(capsys: pytest.CaptureFixture[str], database_url: str, kafka_bootstrap: str) -> None:
    for spec in SERVICES:
        upgrade(migrations_dir(spec.package), database_url)

    def rating_lag() -> int:
        code, out, err = billing(capsys, "lag", "--database-url", database_url, "--bootstrap", kafka_bootstrap)
        assert code == 0, err
        row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["rating", "billing.customers"])
        published, applied, lag = (int(v) for v in row[2:])
        assert published - applied == lag
        return lag

    before = rating_lag()
    tenant = f"lag-{uuid.uuid4().hex[:8]}"
    events = [
        new_event(
            make_customer(tenant, f"c{i}", name="C", billing_email="c@example.com"),
            source="usage-ingest",
            tenant=tenant,
        )
        for i in range(5)
    ]
    outbox = text(
        "INSERT INTO usage_ingest.outbox (event_id, event_type, topic, key, headers, value, sent_at) "
        "VALUES (:id, :type, :topic, :key, CAST('[]' AS jsonb), :value, now())"
    )
    inbox = text("INSERT INTO rating.inbox (event_id, event_type, topic, partition, \"offset\") VALUES (:id, :type, 'billing.customers', 0, 0)")
    # Published by usage-ingest's relay, as far as its outbox says; nothing else moves them.
    execute(database_url, outbox, [{"id": e.id, "type": e.type, **_message(e)} for e in events])
    assert rating_lag() == before + 5
    execute(database_url, inbox, [{"id": e.id, "type": e.type} for e in events[:2]])  # rating applied two of them
    assert rating_lag() == before + 3


def _message(event: CloudEvent[Any]) -> dict[str, Any]:
    message = to_kafka(event)
    return {"topic": message.topic, "key": message.key, "value": message.value}


def execute(database_url: str, statement: Any, rows: list[dict[str, Any]]) -> None:
    async def run() -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(statement, rows)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_lag_on_a_database_without_the_platform_says_migrate(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    from sqlalchemy.engine import make_url

    name = f"cli_empty_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        empty = make_url(database_url).set(database=name).render_as_string(hide_password=False)
        code, _, err = billing(capsys, "lag", "--database-url", empty)
        assert code == PROBLEM, err
        assert "lacks the platform's tables" in err and "billing migrate" in err
        short_and_clean(err)
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}"'))
