"""`billing keys`, `billing lag` and `billing dead-letters` against a real Tansu broker."""

from __future__ import annotations

import asyncio
import importlib
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from typer.testing import CliRunner

from billing_cli.main import app
from billing_cli.platform import SERVICES
from billing_events.topics import CUSTOMERS, DEAD_LETTER
from billing_runtime.auth import read_keys
from billing_runtime.conventions import install_http_conventions
from billing_runtime.embedded import free_port
from billing_runtime.migrations import migrations_dir, upgrade
from billing_runtime.testing import migrate

runner = CliRunner()


def billing(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_issue_list_revoke(database_url: str, kafka_bootstrap: str) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    db = ["--database-url", database_url]
    out = billing("keys", "issue", "--tenant", tenant, "--scope", "write", "--label", "erp", "--bootstrap", kafka_bootstrap, *db)
    key = out.strip().splitlines()[-1]
    parsed = re.match(r"^bk_live_(k[0-9a-f]{16})_[0-9a-f]{64}$", key)
    assert parsed is not None, key
    key_id = parsed.group(1)
    listed = billing("keys", "list", *db)  # from the key table
    row = next(line for line in listed.splitlines() if line.startswith(key_id))
    assert tenant in row and "write" in row and "erp" in row and key.rsplit("_", 1)[1] not in listed
    store = asyncio.run(read_keys(kafka_bootstrap))  # and announced on the topic
    assert store.verify(key).tenant == tenant

    billing("keys", "revoke", key_id, "--reason", "rotated", "--bootstrap", kafka_bootstrap, *db)
    store = asyncio.run(read_keys(kafka_bootstrap))
    assert store.keys[key_id].revoked_at is not None
    row = next(line for line in billing("keys", "list", *db).splitlines() if line.startswith(key_id))
    assert row.split()[4] != "-"  # the revoked column
    result = runner.invoke(app, ["keys", "revoke", "k" + "f" * 16, "--bootstrap", kafka_bootstrap, *db])
    assert result.exit_code != 0


def test_keys_issue_refuses_a_bad_tenant_or_scope(database_url: str, kafka_bootstrap: str) -> None:
    db = ["--database-url", database_url]
    assert runner.invoke(app, ["keys", "issue", "--tenant", "Not Valid", "--bootstrap", kafka_bootstrap, *db]).exit_code != 0
    assert runner.invoke(app, ["keys", "issue", "--tenant", "ok-tenant", "--scope", "root", "--bootstrap", kafka_bootstrap, *db]).exit_code != 0
    assert runner.invoke(app, ["keys", "list"], env={"DATABASE_URL": ""}).exit_code != 0  # the key table is needed


def test_dead_letters_shows_where_and_why(kafka_bootstrap: str) -> None:
    marker = uuid.uuid4().hex

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        headers = [
            ("ce_type", b"billing.customer.upserted.v1"),
            ("ce_id", marker.encode()),
            ("dlq_service", b"rating"),
            ("dlq_topic", b"billing.customers"),
            ("dlq_partition", b"2"),
            ("dlq_offset", b"17"),
            ("dlq_error", f"ValueError: broken {marker}".encode()),
            ("dlq_code", b"handler_failed"),
        ]
        await producer.send_and_wait(DEAD_LETTER.name, b"{}", key=b"k", headers=headers)
        await producer.stop()

    asyncio.run(send())
    out = billing("dead-letters", "--bootstrap", kafka_bootstrap)
    line = next(i for i, text in enumerate(out.splitlines()) if marker in text and "rating" in text)
    assert "billing.customers[2]@17" in out.splitlines()[line] and "handler_failed" in out.splitlines()[line]
    assert f"broken {marker}" in out


def test_lag_per_group_and_partition_as_the_broker_reports_it(database_url: str, kafka_bootstrap: str) -> None:
    migrate(database_url, *(spec.package for spec in SERVICES))  # the platform's own count comes first, from these tables
    group = f"lagtest-{uuid.uuid4().hex[:8]}"

    async def consume_one_of_three() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        tp = TopicPartition(CUSTOMERS.name, 0)
        for _ in range(3):
            await producer.send_and_wait(CUSTOMERS.name, b"{}", key=b"x", partition=0)
        await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.commit({tp: end - 2})
        await consumer.stop()

    asyncio.run(consume_one_of_three())
    out = billing("lag", "--broker", "--database-url", database_url, "--bootstrap", kafka_bootstrap)
    row = next(line for line in out.splitlines() if line.startswith(group))
    assert row.split()[1:3] == [CUSTOMERS.name, "0"] and row.split()[-1] == "2"


def test_bill_run_with_progress_against_rating_and_invoicing(database_url: str, kafka_bootstrap: str) -> None:
    """`billing bill-run` with a seller's key against real rating and invoicing (API keys on): a
    seller with nothing to bill closes with 0 buyers; another seller's key is refused before any call."""
    apps = {name: _served_app(name, database_url, kafka_bootstrap) for name in ("rating", "invoicing")}
    try:
        seller = f"cli-{uuid.uuid4().hex[:8]}"
        issued = billing("keys", "issue", "--tenant", seller, "--scope", "write", "--bootstrap", kafka_bootstrap, "--database-url", database_url)
        key = issued.strip().splitlines()[-1]
        urls = ["--rating-url", apps["rating"].url, "--invoicing-url", apps["invoicing"].url, "--bootstrap", kafka_bootstrap, "--database-url", database_url]
        for _ in range(100):  # until both services have read the new key
            out = runner.invoke(app, ["bill-run", seller, "2026-10", "--api-key", key, *urls])
            if out.exit_code == 0:
                break
            time.sleep(0.1)
        assert out.exit_code == 0, out.output
        assert "0 buyers" in out.output and "started" in out.output
        again = billing("bill-run", seller, "2026-10", "--api-key", key, *urls)
        assert "0 buyers" in again

        refused = runner.invoke(app, ["bill-run", "someone-else", "2026-10", "--api-key", key, *urls])
        assert refused.exit_code != 0 and "not a key of someone-else" in refused.output
    finally:
        for served in apps.values():
            served.stop()


class _Served:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread, port: int) -> None:
        self.server, self.thread, self.url = server, thread, f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def _served_app(name: str, database_url: str, bootstrap: str) -> _Served:
    upgrade(migrations_dir(name), database_url)
    settings = importlib.import_module(f"{name}.config").Settings(
        database_url=database_url, kafka_bootstrap_servers=bootstrap, auth_mode="api_key", clock_fixed_at=datetime(2026, 11, 21, 9, tzinfo=UTC)
    )
    application = importlib.import_module(f"{name}.main").build(settings)
    install_http_conventions(application)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1200):
        if server.started:
            return _Served(server, thread, port)
        time.sleep(0.05)
    raise AssertionError(f"{name} did not start")
