"""Batches: a polled batch is applied in one transaction, a poison event in it is dead-lettered
alone, a consumer killed between its commit and its offset commit resumes with nothing lost or
doubled, and the relay leaves VACUUM free to remove what it sent. Real PostgreSQL, real Tansu."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from billing_events import CloudEvent, CustomerUpserted, new_event, to_kafka
from billing_events.topics import CUSTOMERS
from billing_runtime.config import CommonSettings
from billing_runtime.errors import BillingError
from billing_runtime.inbox import RejectedEvents
from billing_runtime.service import ServiceRuntime
from billing_runtime.tasks import cancel
from billing_runtime.testing import REJOIN_SESSION_TIMEOUT_MS, dead_lettered, eventually

from .conftest import TallyToy, customer


class Unwelcome(BillingError):
    code = "customer_unwelcome"


class Toy(TallyToy):
    """A throwaway service counting the CustomerUpserted events it applies per tenant, one at a
    time (`on`) or a run at a time (`on_batch`, one set-based upsert per run)."""

    def __init__(self, database_url: str, bootstrap: str, *, batch: bool, max_batch_bytes: int = 1_048_576, fetch_bytes: int = 262_144) -> None:
        super().__init__()
        self.settings = CommonSettings(
            database_url=database_url,
            kafka_bootstrap_servers=bootstrap,
            consumer_max_attempts=2,
            outbox_retention_days=0,
            consumer_max_batch_bytes=max_batch_bytes,
            consumer_max_partition_fetch_bytes=fetch_bytes,
            consumer_session_timeout_ms=REJOIN_SESSION_TIMEOUT_MS,
        )
        self.name = f"toy-{self.schema}"
        self.batch = batch
        self.reject_names: set[str] = set()  # the batch handler refuses these with RejectedEvents
        self.runtime = self.new_runtime()

    def new_runtime(self) -> ServiceRuntime:
        runtime = ServiceRuntime(self.name, self.settings, self.metadata)
        if self.batch:
            runtime.consume(batch={CustomerUpserted: self.apply_run})
        else:
            runtime.consume({CustomerUpserted: self.apply})
        return runtime

    async def apply(self, runtime: ServiceRuntime, session: Any, event: CloudEvent[CustomerUpserted]) -> None:
        assert runtime is self.runtime
        await self.count(session, event)

    async def apply_run(self, runtime: ServiceRuntime, session: Any, events: list[CloudEvent[CustomerUpserted]]) -> None:
        assert runtime is self.runtime
        refused = {e.id: Unwelcome(f"{e.data.name} is not welcome") for e in events if e.data.name in self.reject_names}
        if refused:
            raise RejectedEvents(refused)
        if any(e.data.name in self.fail_names for e in events):
            raise RuntimeError("cannot apply this run")
        counts: dict[str, int] = {}
        for e in events:
            counts[e.tenant] = counts.get(e.tenant, 0) + 1
        stmt = pg_insert(self.tally).values([{"tenant": t, "applied": n} for t, n in counts.items()])
        await session.execute(stmt.on_conflict_do_update(index_elements=["tenant"], set_={"applied": self.tally.c.applied + stmt.excluded.applied}))

    async def inbox(self) -> dict[str, tuple[str, str | None]]:
        t = self.runtime.inbox_table
        async with self.runtime.sessions() as session:
            return {r.event_id: (r.status, r.error) for r in (await session.execute(select(t.c.event_id, t.c.status, t.c.error))).all()}

    async def error_codes(self) -> dict[str, str | None]:
        t = self.runtime.inbox_table
        async with self.runtime.sessions() as session:
            return {r.event_id: r.error_code for r in (await session.execute(select(t.c.event_id, t.c.error_code))).all()}

    async def restart(self) -> None:
        """Stop (leaving the group with its offsets committed) and start a new runtime in the same group."""
        await self.runtime.stop()
        self.runtime = self.new_runtime()
        await self.runtime.start()
        await self.runtime.wait_consuming()


async def toy_of(database_url: str, kafka_bootstrap: str, *, batch: bool, max_batch_bytes: int = 1_048_576, fetch_bytes: int = 262_144) -> Toy:
    toy = Toy(database_url, kafka_bootstrap, batch=batch, max_batch_bytes=max_batch_bytes, fetch_bytes=fetch_bytes)
    await toy.create()
    await toy.runtime.start()
    await toy.runtime.wait_consuming()
    return toy


async def send_all(producer: AIOKafkaProducer, events: list[CloudEvent[Any]]) -> None:
    futures = []
    for event in events:
        m = to_kafka(event)
        futures.append(await producer.send(m.topic, value=m.value, key=m.key, headers=m.headers))
    await asyncio.gather(*futures)


async def _equals(count: Any, expected: int) -> bool:
    return bool(await count == expected)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("batch", [False, True], ids=["on", "on_batch"])
async def test_a_poison_event_in_a_batch_is_dead_lettered_alone_while_the_rest_applies(
    database_url: str, kafka_bootstrap: str, producer: AIOKafkaProducer, batch: bool
) -> None:
    toy = await toy_of(database_url, kafka_bootstrap, batch=batch)
    try:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        # One account, so one partition: published while the consumer is away, they come back as one batch.
        events = [new_event(customer(tenant, revision=i + 1), source="test", tenant=tenant) for i in range(12)]
        events[4] = new_event(customer(tenant, name="Always fails", revision=5), source="test", tenant=tenant)
        toy.fail_names.add("Always fails")
        if batch:
            events[9] = new_event(customer(tenant, name="Unwelcome", revision=10), source="test", tenant=tenant)
            toy.reject_names.add("Unwelcome")
        # Data naming another partner than the envelope: refused by the runtime, before any handler.
        events[7] = new_event(customer(f"{tenant}-other", revision=8), source="test", tenant=tenant)
        poison = {events[4].id, events[7].id} | ({events[9].id} if batch else set())
        await toy.runtime.stop()
        await send_all(producer, events)
        sizes = metric("billing_consumer_batch_size_count", service=toy.name, topic=CUSTOMERS.name)
        await toy.restart()

        await eventually(lambda: _is(toy.applied(tenant), len(events) - len(poison)), "the good events applied")
        # Each one's copy on the dead-letter topic (dead_lettered fails the test if one is missing).
        dead = {event_id: await dead_lettered(kafka_bootstrap, event_id, service=toy.name, timeout=30.0) for event_id in poison}
        assert "cannot apply" in dead[events[4].id]["dlq_error"] and dead[events[4].id]["dlq_code"] == "handler_failed"
        assert dead[events[7].id]["dlq_code"] == "foreign_tenant" and "its partner_id is" in dead[events[7].id]["dlq_error"]
        if batch:
            assert dead[events[9].id]["dlq_code"] == "customer_unwelcome"
            assert "Unwelcome [customer_unwelcome]: Unwelcome is not welcome" in dead[events[9].id]["dlq_error"]
        ours = {e.id for e in events}
        inbox = {k: v for k, v in (await toy.inbox()).items() if k in ours}  # (an earlier test's events may reach this group)
        assert {k for k, (status, _) in inbox.items() if status == "dead_lettered"} == poison
        assert all(inbox[e.id][0] == "applied" for e in events if e.id not in poison)
        assert "cannot apply" in (inbox[events[4].id][1] or "")
        codes = await toy.error_codes()
        assert {e: codes[e] for e in poison} == {events[4].id: "handler_failed", events[7].id: "foreign_tenant"} | (
            {events[9].id: "customer_unwelcome"} if batch else {}
        )
        assert all(codes[e.id] is None for e in events if e.id not in poison)
        # The twelve came in fewer polled batches than events (the point of the test is a poison inside a batch).
        assert metric("billing_consumer_batch_size_count", service=toy.name, topic=CUSTOMERS.name) - sizes < len(events)
        assert metric("billing_consumer_batch_isolations_total", service=toy.name, topic=CUSTOMERS.name) >= 1
    finally:
        await toy.runtime.stop()


async def _is(coro: Any, value: int) -> bool:
    return bool(await coro == value)


async def test_a_polled_batch_heavier_than_the_byte_bound_is_applied_in_order_in_several_transactions(
    database_url: str, kafka_bootstrap: str, producer: AIOKafkaProducer
) -> None:
    # Twelve events of one account (one partition), polled as one batch while the bound takes
    # three of them: four transactions, each with its own offset commit.
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    events = [new_event(customer(tenant, name=f"Contoso {i:02d}", revision=10 + i), source="test", tenant=tenant) for i in range(12)]
    sizes = {len(to_kafka(e).value) for e in events}
    assert len(sizes) == 1  # the same size each (two-digit names and revisions), so three fill the bound exactly
    bound = 3 * sizes.pop()
    toy = await toy_of(database_url, kafka_bootstrap, batch=True, max_batch_bytes=bound)
    try:
        await toy.runtime.stop()
        await send_all(producer, events)
        labels = {"service": toy.name, "topic": CUSTOMERS.name}
        batches = metric("billing_consumer_batch_size_count", **labels)
        splits = metric("billing_consumer_batch_splits_total", **labels)
        within = metric("billing_consumer_batch_bytes_bucket", **labels, le="1000.0")
        everything = metric("billing_consumer_batch_bytes_count", **labels)
        await toy.restart()

        await eventually(lambda: _is(toy.applied(tenant), len(events)), "every event applied")
        assert metric("billing_consumer_batch_splits_total", **labels) - splits >= 1
        assert metric("billing_consumer_batch_size_count", **labels) - batches >= 4
        # Every applied batch within the bound (under 1,000 bytes: the histogram's bucket holds them all).
        assert bound <= 1000
        applied = metric("billing_consumer_batch_bytes_count", **labels) - everything
        assert metric("billing_consumer_batch_bytes_bucket", **labels, le="1000.0") - within == applied
        t = toy.runtime.inbox_table
        async with toy.runtime.sessions() as session:
            rows = (await session.execute(select(t.c.event_id, t.c.status, t.c.offset, t.c.applied_at).where(t.c.event_id.in_([e.id for e in events])))).all()
        by_id = {r.event_id: r for r in rows}
        assert [by_id[e.id].status for e in events] == ["applied"] * len(events)
        # In offset order, and in several transactions: a later run's transaction started after an earlier one's.
        offsets = [by_id[e.id].offset for e in events]
        assert offsets == sorted(offsets)
        started = [by_id[e.id].applied_at for e in events]
        assert started == sorted(started) and len(set(started)) >= 4
    finally:
        await toy.runtime.stop()


async def test_a_message_larger_than_the_fetch_bound_still_arrives_and_applies(database_url: str, kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    # CONSUMER_MAX_PARTITION_FETCH_BYTES bounds what one poll holds; it must never stall a
    # partition on a message larger than itself (the broker hands over a first batch whole).
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    events = [
        new_event(customer(tenant, name=name, revision=1 + i), source="test", tenant=tenant)
        for i, name in enumerate(["Small", "Large " + "x" * 8000, "Small again"])
    ]
    assert len(to_kafka(events[1]).value) > 8000
    toy = await toy_of(database_url, kafka_bootstrap, batch=True, fetch_bytes=1024)
    try:
        await send_all(producer, events)
        await eventually(lambda: _is(toy.applied(tenant), len(events)), "the three events applied, the large one among them")
        assert set((await toy.inbox()).values()) >= {("applied", None)}
    finally:
        await toy.runtime.stop()


def _applied_once(toy: Toy, tenant: str) -> Callable[[], Awaitable[bool]]:
    """A probe for `eventually`: has `tenant`'s one event been applied?"""
    return lambda: _is(toy.applied(tenant), 1)


async def test_a_consumer_killed_between_its_commit_and_its_offset_commit_resumes_with_nothing_lost_or_doubled(
    database_url: str, kafka_bootstrap: str, producer: AIOKafkaProducer
) -> None:
    toy = await toy_of(database_url, kafka_bootstrap, batch=True)
    try:
        consumer = toy.runtime.consumer
        assert consumer is not None

        async def lost(*args: Any) -> None:
            return None  # each batch's transaction commits, its offset commit never reaches the broker

        consumer._commit_offset = lost  # type: ignore[method-assign, assignment]  # a stand-in for the instance's own method
        first = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(8)]  # several accounts: several partitions
        sent = [new_event(customer(t), source="test", tenant=t) for t in first]
        await send_all(producer, sent)
        for tenant in first:
            await eventually(_applied_once(toy, tenant), "the first events applied")
        duplicates = metric("billing_events_duplicate_total", service=toy.name, type=CustomerUpserted.event_type)
        [task] = [t for t in toy.runtime._tasks if t.get_name().endswith("-consumer")]
        await cancel(task)  # killed, with no offset committed for anything it applied

        later = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(4)]
        sent += [new_event(customer(t), source="test", tenant=t) for t in later]
        await send_all(producer, sent[len(first) :])
        await toy.restart()
        for tenant in first + later:
            await eventually(_applied_once(toy, tenant), "every event applied")
        # The restarted consumer read the first events again and skipped each through the inbox:
        # once it has, nothing is left unread that could apply one twice.
        await eventually(
            lambda: metric("billing_events_duplicate_total", service=toy.name, type=CustomerUpserted.event_type) - duplicates >= len(first),
            "the first events read again and skipped",
        )
        assert [await toy.applied(t) for t in first + later] == [1] * len(first + later)
        inbox = await toy.inbox()  # (an earlier test's events may reach this group too)
        assert all(inbox[e.id][0] == "applied" for e in sent)
    finally:
        await toy.runtime.stop()


_VACUUM_TUPLES = re.compile(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable")


async def test_vacuum_removes_the_sent_rows_purged_while_a_relay_runs(database_url: str, kafka_bootstrap: str) -> None:
    toy = await toy_of(database_url, kafka_bootstrap, batch=False)
    try:
        t = toy.runtime.outbox_table
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        for round_ in range(3):
            async with toy.runtime.transaction() as session:
                events = [toy.runtime.event(customer(tenant, revision=round_ * 100 + i + 1, external_id=f"c{i}"), tenant=tenant) for i in range(100)]
                await toy.runtime.outbox.add(session, *events)

        async def all_sent() -> bool:
            async with toy.runtime.sessions() as session:
                return not await session.scalar(select(func.count()).select_from(t).where(t.c.sent_at.is_(None)))

        await eventually(all_sent, "the relay sent every row")
        # And the toy's consumer has caught up (it reads the whole topic, other tests' events too):
        # a batch it is still applying is an open transaction, whose snapshot VACUUM would honour.
        await eventually(lambda: _equals(toy.applied(tenant), 300), "the consumer applied the 300 events")
        async with toy.runtime.transaction() as session:
            # Sent before the retention window (0 days here) began, as if days ago.
            await session.execute(update(t).values(sent_at=func.now() - timedelta(seconds=1), created_at=func.now() - timedelta(seconds=1)))
        assert toy.runtime.relay is not None
        assert await toy.runtime.relay.purge() == 300
        await asyncio.sleep(0.5)  # the relay keeps polling meanwhile

        messages: list[str] = []
        conn = await asyncpg.connect(database_url)
        try:
            conn.add_log_listener(lambda _conn, message: messages.append(message.message))
            await conn.execute(f'VACUUM (VERBOSE) "{toy.schema}".outbox')
        finally:
            await conn.close()
        counts = [tuple(int(n) for n in m.groups()) for m in map(_VACUUM_TUPLES.search, messages) if m]
        assert counts, messages
        removed, remain, not_yet_removable = counts[0]
        assert not_yet_removable == 0, messages
        # Every purged row is gone and none is held back by an open transaction. VACUUM counts only
        # what it removed itself: page pruning on the relay's own reads may have removed some first
        # (a run removed 290 of the 300 so), which needs the same free xmin horizon. Without pruning
        # it counts up to 900: the 300 deleted rows and the versions left dead by the relay marking
        # them sent and by this test's UPDATE (300 each; runs on a busy machine removed 600 and 900).
        assert remain == 0 and 0 < removed <= 900, messages
    finally:
        await toy.runtime.stop()


async def test_the_relay_is_woken_by_commits_that_wrote_outbox_rows_only(database_url: str, kafka_bootstrap: str) -> None:
    toy = await toy_of(database_url, kafka_bootstrap, batch=False)
    try:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        wakes = metric("billing_outbox_relay_wakes_total", service=toy.name)
        async with toy.runtime.transaction() as session:
            await session.execute(pg_insert(toy.tally).values(tenant=tenant, applied=0))
        assert metric("billing_outbox_relay_wakes_total", service=toy.name) == wakes
        with pytest.raises(RuntimeError):
            async with toy.runtime.transaction() as session:
                await toy.runtime.outbox.add(session, toy.runtime.event(customer(tenant), tenant=tenant))
                raise RuntimeError("rolled back")
        assert metric("billing_outbox_relay_wakes_total", service=toy.name) == wakes
        async with toy.runtime.transaction() as session:
            await toy.runtime.outbox.add(session, toy.runtime.event(customer(tenant), tenant=tenant))
        assert metric("billing_outbox_relay_wakes_total", service=toy.name) == wakes + 1
    finally:
        await toy.runtime.stop()


async def test_a_transaction_without_savepoint_commits_and_fails_with_the_request(database_url: str, kafka_bootstrap: str) -> None:
    """`runtime.transaction(savepoint=False)` inside a request's unit: no SAVEPOINT of its own, the
    rows and outbox events commit only when the request does (the relay woken after that), and a
    failure inside it rolls back the whole request."""
    from billing_runtime.unit import enter, leave

    toy = await toy_of(database_url, kafka_bootstrap, batch=False)
    try:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        t = toy.runtime.outbox_table

        async def outbox_rows() -> int:
            async with toy.runtime.engine.connect() as conn:
                query = select(func.count()).select_from(t).where(t.c.headers.contains([["ce_tenant", tenant]]))
                return int(await conn.scalar(query) or 0)

        async def request(fail: bool) -> tuple[bool, int, bool]:
            """A write request's unit as the conventions middleware runs it: what the handler saw
            (in a savepoint?, rows visible to another connection before the commit), and whether
            the unit's transaction was still there to commit."""
            async with toy.runtime.engine.connect() as conn:
                transaction = await conn.begin()
                unit, token = enter(conn)
                try:
                    with pytest.raises(RuntimeError) if fail else contextlib.nullcontext():
                        async with toy.runtime.transaction(savepoint=False) as session:
                            in_savepoint = session.in_nested_transaction()
                            await toy.runtime.outbox.add(session, toy.runtime.event(customer(tenant, revision=2 if fail else 1), tenant=tenant))
                            if fail:
                                raise RuntimeError("the handler failed")
                    seen_before_commit = await outbox_rows()
                    active = transaction.is_active
                    if active:
                        await transaction.commit()
                finally:
                    leave(token)
            return in_savepoint, seen_before_commit, active and unit.wrote_outbox

        # Not in a savepoint, nothing visible before the request commits, and the unit told to wake
        # the relay once it has (the middleware does).
        assert await request(fail=False) == (False, 0, True)
        assert await outbox_rows() == 1
        in_savepoint, _, committed = await request(fail=True)
        assert (in_savepoint, committed) == (False, False)
        assert await outbox_rows() == 1  # the failed request's event was rolled back with it
    finally:
        await toy.runtime.stop()
