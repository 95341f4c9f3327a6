"""Two rating replicas in one consumer group share the partitions, and every usage event is
applied exactly once (by one of them)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import text

from billing_events import UsageRecorded, account_id, new_event, to_kafka
from billing_events.topics import USAGE
from billing_runtime.testing import eventually, serve
from rating.config import Settings
from rating.main import build


def applied_usage() -> float:
    return REGISTRY.get_sample_value("billing_events_applied_total", {"service": "rating", "type": UsageRecorded.event_type}) or 0.0


async def test_two_replicas_share_the_partitions_and_apply_every_usage_event_once(settings: Settings, producer: AIOKafkaProducer, tenant: str) -> None:
    first, second = build(settings), build(settings)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve(first))
        await stack.enter_async_context(serve(second))
        consumers = [app.state.runtime.consumer for app in (first, second)]
        assert consumers[0].group_id == consumers[1].group_id

        def usage_partitions(i: int) -> set[int]:
            return {tp.partition for tp in consumers[i].assignment() if tp.topic == USAGE.name}

        # The first replica held every partition until the second joined; wait for the rebalance.
        await eventually(
            lambda: usage_partitions(0) and usage_partitions(1) and len(usage_partitions(0) | usage_partitions(1)) == USAGE.partitions,
            "the replicas to share the partitions",
            60,
            interval=0.2,
        )
        assert not usage_partitions(0) & usage_partitions(1)

        before = applied_usage()
        base = datetime(2026, 10, 5, tzinfo=UTC)
        events = [
            new_event(
                UsageRecorded(
                    record_id=f"u-{i}",
                    account_id=account_id(tenant, f"c{i % 40}"),
                    partner_id=tenant,
                    product_code="BKP-GB",
                    quantity=Decimal("1.5"),
                    occurred_at=base + timedelta(minutes=i),
                ),
                source="usage-ingest",
                tenant=tenant,
            )
            for i in range(400)
        ]
        futures = []
        for event in events:
            m = to_kafka(event)
            futures.append(await producer.send(m.topic, value=m.value, key=m.key, headers=m.headers))
        await asyncio.gather(*futures)

        runtime = first.state.runtime

        async def all_stored() -> bool:
            async with runtime.sessions() as session:
                return await session.scalar(text("SELECT count(*) FROM rating.usage_record WHERE seller_id = :t"), {"t": tenant}) == len(events)

        await eventually(all_stored, f"all {len(events)} usage records applied", 120, interval=0.2)
        # (the counter moves just after each batch's commit)
        await eventually(lambda: applied_usage() - before >= len(events), "every usage event counted as applied")
        # Once: the replicas applied 400 between them (a replay would count as a duplicate, not here).
        assert applied_usage() - before == len(events)
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    text("SELECT partition, count(*) FROM rating.inbox WHERE event_id = ANY(:ids) AND status = 'applied' GROUP BY partition"),
                    {"ids": [e.id for e in events]},
                )
            ).all()
        by_partition = {p: n for p, n in rows}
        assert sum(by_partition.values()) == len(events)
        # Both replicas applied some of them: each applied its own partitions' events.
        assert set(by_partition) & usage_partitions(0) and set(by_partition) & usage_partitions(1)
