"""The sending pool both senders share (emails, webhooks): one claim mechanism, a bounded number
of concurrent deliveries, and settling in batches.

    claim ──▶ queue ──▶ N workers (deliver, no transaction open) ──▶ settle (one transaction per batch)

- **Claim**: due rows (`pending`, or `sending` whose lease ran out) are taken in one short
  statement (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`): concurrent
  senders (replicas) never take the same row, each claim counts as an attempt and sets a lease
  (a later `next_attempt_at`). The pool claims only what it has room for: at most `concurrency +
  batch_size` deliveries are claimed and not yet delivered, so a claimed row waits for at most one
  round of deliveries before its own starts, well inside its lease.
- **Deliver**: each worker runs one delivery at a time, with no transaction open. What it returns
  (an outcome) goes to the settler; an exception leaves the row claimed until its lease ends.
- **Settle**: the settler takes every outcome ready (it does not wait for more: an idle pool
  settles each delivery at once, a busy one many per transaction) and records them in one
  transaction. A failed settle is retried; if it keeps failing the rows come back when their
  lease ends and are delivered again (the same Message-ID / Webhook-Id), as after a crash.

A row this process still has in hand is never handed to a second worker even if its lease ran
out meanwhile (a stalled document fetch): the claim is counted, the copy is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from prometheus_client import Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.service import ServiceRuntime

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

IN_FLIGHT = Gauge("billing_deliveries_in_flight", "Deliveries claimed by this process and not yet settled", ["channel"])
CLAIMED = Counter("billing_deliveries_claimed_total", "Deliveries claimed (each claim is an attempt)", ["channel"])
SETTLE_FAILURES = Counter("billing_delivery_settle_failures_total", "Batches of outcomes that could not be recorded", ["channel"])

DUE_STATUSES = ("pending", "sending")
SETTLE_BATCH = 500
SETTLE_TRIES = 3


async def claim_due(session: AsyncSession, table: Table, now: datetime, lease: timedelta, limit: int) -> list[Any]:
    """Take up to `limit` due rows of a delivery table (`delivery_id`, `status`, `attempts`,
    `next_attempt_at`), oldest due first, in one statement; returns the claimed rows. SKIP LOCKED
    keeps concurrent senders apart, the lease hands a row to another sender only if this one
    does not report back in time, and each claim counts as an attempt (so even a message that
    crashes the sender runs out of attempts)."""
    due = (
        select(table.c.delivery_id)
        .where(table.c.status.in_(DUE_STATUSES), table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(table)
        .where(table.c.delivery_id.in_(due))
        .values(status="sending", attempts=table.c.attempts + 1, next_attempt_at=now + lease)
        .returning(*table.c)
    )
    return sorted(rows.all(), key=lambda r: (r.next_attempt_at, r.delivery_id))


T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


class LeasedQueue(Generic[M]):
    """A delivery table read as a leased queue, the one both senders claim from: `claim` takes up
    to `limit` due rows (`claim_due`, leased for `lease`) and returns them as `row` models."""

    def __init__(self, table: Table, row: type[M], lease: timedelta) -> None:
        self.table = table
        self.row = row
        self.lease = lease

    async def claim(self, session: AsyncSession, now: datetime, limit: int) -> list[M]:
        return [self.row.model_validate(r._mapping) for r in await claim_due(session, self.table, now, self.lease, limit)]


class Channel(Protocol[T, R]):
    """What the pool needs of a sender. `deliver` talks to the outside world with no transaction
    open and returns an outcome; `settle` records a batch of outcomes in the session given."""

    name: str

    def key(self, item: T) -> str: ...

    def open(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def claim(self, session: AsyncSession, now: datetime, limit: int) -> list[T]: ...

    async def deliver(self, item: T) -> R: ...

    async def settle(self, session: AsyncSession, outcomes: Sequence[R]) -> None: ...


@dataclass
class PoolSettings:
    concurrency: int
    batch_size: int
    poll_seconds: float

    @property
    def rounds(self) -> int:
        """The rounds of deliveries a claimed row waits through, its own included: a pool holds at
        most `concurrency + batch_size` rows and delivers `concurrency` at a time. A channel's lease
        is this many of its slowest deliveries, and a margin."""
        return 1 + math.ceil(self.batch_size / self.concurrency)


class SendingPool(Generic[T, R]):
    def __init__(self, runtime: ServiceRuntime, channel: Channel[T, R], settings: PoolSettings) -> None:
        self.runtime = runtime
        self.channel = channel
        self.settings = settings
        self.limit = settings.concurrency + settings.batch_size
        # Claimed by this process and not yet settled (queued, being delivered, or being recorded).
        self._in_hand: set[str] = set()
        self._room = asyncio.Event()
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._outcomes: asyncio.Queue[tuple[str, R]] = asyncio.Queue()

    @property
    def in_flight(self) -> int:
        return len(self._in_hand)

    async def run(self) -> None:
        """Claim, deliver and settle for as long as the service runs."""
        async with self.channel.open(), self._running():
            await self._claim_loop()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        workers = [asyncio.create_task(self._work(), name=f"{self.channel.name}-worker-{i}") for i in range(self.settings.concurrency)]
        settler = asyncio.create_task(self._settle_loop(), name=f"{self.channel.name}-settler")
        try:
            yield
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            settler.cancel()
            await asyncio.gather(settler, return_exceptions=True)
            # What was delivered is recorded before the pool goes: fewer resends after a restart.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._settle_ready(), timeout=5.0)
            self._in_hand.clear()
            IN_FLIGHT.labels(self.channel.name).set(0)

    async def _claim_loop(self) -> None:
        while True:
            room = self.limit - len(self._in_hand)
            if room < self.settings.batch_size and len(self._in_hand) >= self.settings.concurrency:
                self._room.clear()
                await self._room.wait()
                continue
            want = min(self.settings.batch_size, room)
            try:
                claimed = await self.claim(want)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment; the pool must outlive it
                log.exception("%s pool: claim failed; retrying", self.channel.name)
                claimed = []
            if len(claimed) < want:
                await asyncio.sleep(self.settings.poll_seconds)

    async def claim(self, limit: int) -> list[T]:
        """One claim; returns what was claimed. Rows already in hand (their lease ran out while
        they were being delivered) are not queued a second time."""
        with tracer.start_as_current_span("notify claim", attributes={"notify.channel": self.channel.name, "notify.limit": limit}) as span:
            async with self.runtime.sessions() as session, session.begin():
                claimed = await self.channel.claim(session, self.runtime.clock.now(), limit)
            span.set_attribute("notify.claimed", len(claimed))
        CLAIMED.labels(self.channel.name).inc(len(claimed))
        for item in claimed:
            key = self.channel.key(item)
            if key not in self._in_hand:
                self._in_hand.add(key)
                self._queue.put_nowait(item)
        IN_FLIGHT.labels(self.channel.name).set(len(self._in_hand))
        return claimed

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            key = self.channel.key(item)
            try:
                outcome = await self.channel.deliver(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # the lease brings the row back later
                log.exception("%s %s could not be delivered; it is retried when its lease ends", self.channel.name, key)
                self._forget([key])
                continue
            self._outcomes.put_nowait((key, outcome))

    def _forget(self, keys: list[str]) -> None:
        self._in_hand.difference_update(keys)
        IN_FLIGHT.labels(self.channel.name).set(len(self._in_hand))
        self._room.set()

    async def _settle_loop(self) -> None:
        while True:
            first = await self._outcomes.get()
            await self._settle([first, *self._drain()])

    def _drain(self) -> list[tuple[str, R]]:
        ready: list[tuple[str, R]] = []
        while len(ready) < SETTLE_BATCH - 1 and not self._outcomes.empty():
            ready.append(self._outcomes.get_nowait())
        return ready

    async def _settle_ready(self) -> None:
        while not self._outcomes.empty():
            await self._settle(self._drain())

    async def _settle(self, ready: list[tuple[str, R]]) -> None:
        if not ready:
            return
        outcomes = [outcome for _, outcome in ready]
        attributes: dict[str, AttributeValue] = {"notify.channel": self.channel.name, "notify.outcomes": len(outcomes)}
        try:
            with tracer.start_as_current_span("notify settle", attributes=attributes):
                for attempt in range(1, SETTLE_TRIES + 1):
                    try:
                        async with self.runtime.transaction() as session:
                            await self.channel.settle(session, outcomes)
                        return
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        if attempt == SETTLE_TRIES:
                            SETTLE_FAILURES.labels(self.channel.name).inc()
                            log.exception(
                                "%s pool: %d outcomes could not be recorded; their rows come back when their lease ends",
                                self.channel.name,
                                len(outcomes),
                            )
                        else:
                            await asyncio.sleep(0.5 * attempt)
        finally:
            self._forget([key for key, _ in ready])
