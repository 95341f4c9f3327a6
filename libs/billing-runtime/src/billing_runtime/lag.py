"""Consumer lag as the platform knows it, on any broker.

A broker's partition end offsets are not to be trusted (the embedded Tansu reports wrong ones, so
`end − committed` reads 0 while a consumer is minutes behind). The platform knows both sides
itself: every event is a row of its producer's outbox (`sent_at` set once it is on the topic), and
every event a consumer applied (or dead-lettered) is a row of that consumer's inbox, under the same
event id. A consumer's lag on a topic is the number of published outbox rows, of the event types it
routes, that its inbox does not hold yet (a batch row, `Outbox.add_batched`, counts its events).

Each consumer keeps, per producing schema, a low-water mark: the outbox id below which every row
of its types was applied at the last measure, so a measure reads only the rows above it (the
backlog and a margin). Outbox rows purged after `OUTBOX_RETENTION_DAYS` are no longer counted;
they were published that long ago.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Gauge
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

CONSUMER_LAG = Gauge(
    "billing_consumer_lag",
    "Events published by the services' outboxes that this consumer has not applied yet (the platform's count, not the broker's)",
    ["service", "topic"],
)

# The events of an outbox row: 1, or a batch row's size (`billing_events.envelope.batch_headers`
# puts the content type first and the size second). A batch row is applied whole, in one
# transaction, and its `event_id` is its first event's: it is in the inbox once all of it is.
_EVENTS = "(CASE WHEN o.headers->0->>1 = 'application/cloudevents-batch+json' THEN (o.headers->1->>1)::int ELSE 1 END)"

# Rows a transaction committed late (a lower id published after a higher one) stay in view.
_MARGIN = 1000


@dataclass(frozen=True)
class TopicLag:
    service: str
    topic: str
    published: int  # published events (rows; a batch row its events) of the consumer's types above its low-water mark
    lag: int  # of those, not in the consumer's inbox


async def producer_schemas(conn: AsyncConnection) -> list[str]:
    """Every schema with an outbox table: the producing services in this database."""
    rows = await conn.execute(text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox' AND table_type = 'BASE TABLE' ORDER BY 1"))
    return [r[0] for r in rows]


@dataclass
class LagMeter:
    """The lag of one consumer (its inbox table and the event types it routes)."""

    service: str
    inbox: Table
    event_types: Iterable[str]
    producers: Sequence[str] | None = None  # the producing schemas; None: every schema with an outbox
    _low: dict[str, int] = field(default_factory=dict)

    async def measure(self, conn: AsyncConnection) -> list[TopicLag]:
        types = sorted(set(self.event_types))
        if not types:
            return []
        inbox = f'"{self.inbox.schema}"."{self.inbox.name}"'
        published: dict[str, int] = defaultdict(int)
        lag: dict[str, int] = defaultdict(int)
        for schema in self.producers if self.producers is not None else await producer_schemas(conn):
            low = self._low.get(schema, 0)
            rows = (
                await conn.execute(
                    text(
                        f"SELECT o.topic, sum({_EVENTS}), coalesce(sum({_EVENTS}) FILTER (WHERE i.event_id IS NULL), 0), "
                        "min(o.id) FILTER (WHERE i.event_id IS NULL), max(o.id) "
                        f'FROM "{schema}".outbox o LEFT JOIN {inbox} i ON i.event_id = o.event_id '
                        "WHERE o.id > :low AND o.sent_at IS NOT NULL AND o.event_type = ANY(:types) GROUP BY o.topic"
                    ),
                    {"low": low, "types": types},
                )
            ).all()
            marks = []
            for topic, seen, missing, first_missing, last in rows:
                published[topic] += seen
                lag[topic] += missing
                marks.append(first_missing - 1 if first_missing is not None else last)
            if marks:
                self._low[schema] = max(low, min(marks) - _MARGIN)
        return [TopicLag(self.service, topic, published[topic], lag[topic]) for topic in sorted(published)]

    async def export(self, engine: AsyncEngine, topics: Iterable[str]) -> list[TopicLag]:
        """Measure and set `billing_consumer_lag` for every topic the consumer reads (0 when behind on none)."""
        async with engine.connect() as conn:
            found = await self.measure(conn)
        by_topic = {r.topic: r.lag for r in found}
        for topic in topics:
            CONSUMER_LAG.labels(self.service, topic).set(by_topic.get(topic, 0))
        return found
