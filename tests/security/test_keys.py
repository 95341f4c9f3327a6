"""API keys against the real services: wrong, revoked and out-of-scope keys are refused; no key
material reaches a log or an event; Idempotency-Key replays and conflicts; the rate limit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from billing_events.topics import ALL_TOPICS
from billing_runtime.auth import hash_secret, publish, revocation
from billing_runtime.embedded import TansuBroker, free_port
from billing_runtime.kafka import ensure_topics
from billing_runtime.testing import eventually, every_record, serve, serve_all

if TYPE_CHECKING:  # the fixtures give them; conftest is not importable as a module
    from tests.security.conftest import Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")


def customer(tenant: str, name: str) -> dict[str, object]:
    return {"records": [{"id": f"{tenant}-c-{uuid.uuid4().hex[:6]}", "name": name, "billing_email": "ap@x.example", "country": "IE", "currency": "EUR"}]}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def all_topic_bytes(bootstrap: str) -> bytes:
    """Every key, header and value on every topic, from the beginning."""
    records = await every_record(bootstrap, [t.name for t in ALL_TOPICS])
    return b"".join((m.key or b"") + (m.value or b"") + b"".join(k.encode() + v for k, v in m.headers or []) for m in records)


async def test_wrong_revoked_and_out_of_scope_keys_are_refused(platform: Platform) -> None:
    ingest = platform.clients["usage-ingest"]
    p = platform.partners[0]
    good = p.keys["write"].key
    for bad, code in (
        (good[:-1] + ("0" if good[-1] != "0" else "1"), "api_key_invalid"),  # wrong secret
        (good.replace(p.keys["write"].key_id, "k" + "0" * 16), "api_key_invalid"),  # unknown id
        ("bk_live_nonsense", "api_key_invalid"),
    ):
        r = await ingest.get("/v1/customers", headers={"Authorization": f"Bearer {bad}"})
        assert (r.status_code, r.json()["code"]) == (401, code)
    r = await ingest.get("/v1/customers", headers={"Authorization": f"Basic {good}"})
    assert r.status_code == 401

    r = await ingest.post("/v1/customers", json=customer(p.tenant, "x"), headers=p.headers("read"))
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    assert (await ingest.get("/v1/customers", headers=p.headers("read"))).status_code == 200

    doomed = await platform.issue(p.tenant, "write")
    await platform.wait_known(doomed)
    headers = {"Authorization": f"Bearer {doomed.key}"}
    assert (await platform.clients["notify"].get("/v1/brand", headers=headers)).status_code in (200, 404)
    await publish(platform.bootstrap, revocation(doomed.key_id, p.tenant, reason="test", now=platform.apps["notify"].state.runtime.clock.now()))
    for name, client in platform.clients.items():

        async def refused(c: httpx.AsyncClient = client) -> httpx.Response | None:
            r = await c.get("/v1/nothing-here", headers=headers)
            return r if r.status_code == 401 else None

        r = await eventually(refused, f"{name} to refuse the revoked key", 20)
        assert (r.status_code, r.json()["code"]) == (401, "api_key_revoked"), name


async def test_no_key_material_in_logs_or_events(platform: Platform) -> None:
    capture = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        p = platform.partners[1]
        fresh = await platform.issue(p.tenant, "admin")
        await platform.wait_known(fresh)
        for client in platform.clients.values():
            await client.get("/v1/customers", headers={"Authorization": f"Bearer {fresh.key}"})
            await client.get("/v1/customers", headers={"Authorization": f"Bearer {fresh.key}x"})  # malformed
            await client.post("/v1/customers", json={"bad": True}, headers={"Authorization": f"Bearer {fresh.key}"})
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
    secrets = [k.key for q in platform.partners for k in q.keys.values()] + [fresh.key]
    secret_parts = [s.rsplit("_", 1)[1] for s in secrets]
    logged = "\n".join(capture.lines)
    assert capture.lines, "nothing was logged at all; the check would prove nothing"
    assert not [s for s in secret_parts if s in logged]
    on_kafka = await all_topic_bytes(platform.bootstrap)
    assert hash_secret(fresh.key.rsplit("_", 1)[1]).encode() in on_kafka  # the issue event is there, hashed
    assert not [s for s in secret_parts if s.encode() in on_kafka]


async def test_idempotency_key_replay_and_conflict(platform: Platform) -> None:
    ingest = platform.clients["usage-ingest"]
    p = platform.partners[2]
    headers = {**p.headers(), "Idempotency-Key": f"batch-{uuid.uuid4().hex}"}
    body = customer(p.tenant, "Idem Ltd")
    first = await ingest.post("/v1/customers", json=body, headers=headers)
    again = await ingest.post("/v1/customers", json=body, headers=headers)
    assert first.status_code in (200, 201) and (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    other = await ingest.post("/v1/customers", json=customer(p.tenant, "Other Ltd"), headers=headers)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")


async def test_rate_limit_is_429_with_retry_after(platform: Platform, build_service: Callable[..., FastAPI]) -> None:
    app = build_service("usage-ingest", rate_limit_per_second=0.1, rate_limit_burst=2)
    p = platform.partners[0]
    async with serve(app) as client:
        statuses = [(await client.get("/v1/customers", headers=p.headers("read"))).status_code for _ in range(3)]
        r = await client.get("/v1/customers", headers=p.headers("read"))
        other = await client.get("/v1/customers", headers=platform.partners[1].headers("read"))
    assert statuses == [200, 200, 429] and r.status_code == 429
    assert r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert other.status_code == 200  # the bucket is per key


async def test_keys_survive_a_broker_that_lost_its_topic(platform: Platform, build_service: Callable[..., FastAPI], tmp_path: Path) -> None:
    """Every service started against a broker with empty topics (the embedded one after a restart,
    real Kafka after its retention) still knows every key: the key table is the source of truth."""
    p = platform.partners[0]
    broker = TansuBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    try:
        await ensure_topics(broker.bootstrap)
        # All seven started side by side against the empty broker (each as it would alone: its
        # key table read at start, its key topic empty), then each asked in turn.
        apps = {name: build_service(name, kafka_bootstrap_servers=broker.bootstrap) for name in platform.apps}
        async with serve_all(apps) as clients:
            for name, app in apps.items():
                assert p.keys["read"].key_id in app.state.http_conventions.keys.keys, name
                r = await clients[name].get("/v1/nothing-here", headers=p.headers("read"))
                assert (r.status_code, r.json()["code"]) == (404, "not_found"), name  # authenticated, then no such route
    finally:
        broker.stop()
