"""The producers' compression is a setting (KAFKA_COMPRESSION, zstd unless told): every codec it
offers is one the broker takes and a consumer reads back, event for event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

import pytest

from billing_events import CloudEvent, UsageRecorded, new_event, to_kafka
from billing_events.topics import USAGE
from billing_runtime.config import CommonSettings
from billing_runtime.kafka import make_producer
from billing_runtime.testing import read_events

CODECS = get_args(CommonSettings.model_fields["kafka_compression"].annotation)


async def test_zstd_unless_told_and_none_sends_uncompressed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_COMPRESSION", raising=False)
    assert CommonSettings().kafka_compression == "zstd"
    assert make_producer(CommonSettings(), client_id="t")._compression_type == "zstd"
    monkeypatch.setenv("KAFKA_COMPRESSION", "none")
    assert make_producer(CommonSettings(), client_id="t")._compression_type is None
    monkeypatch.setenv("KAFKA_COMPRESSION", "brotli")
    with pytest.raises(ValueError, match="KAFKA_COMPRESSION"):
        CommonSettings()


@pytest.mark.parametrize("codec", CODECS)
async def test_every_codec_reaches_the_broker_and_reads_back(codec: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_COMPRESSION", codec)
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)
    run = uuid.uuid4().hex[:8]
    events = [
        new_event(
            UsageRecorded(
                record_id=f"{run}-{i}",
                account_id=f"acc-{run}",
                partner_id="t",
                product_code="GB",
                quantity=Decimal("1.25"),
                occurred_at=datetime(2026, 10, 2, tzinfo=UTC),
            ),
            source="test",
            tenant="t",
        )
        for i in range(50)
    ]
    producer = make_producer(settings, client_id=f"compression-{codec}")
    await producer.start()
    try:
        futures = []
        for event in events:
            m = to_kafka(event)
            futures.append(await producer.send(m.topic, value=m.value, key=m.key, headers=m.headers))
        for future in futures:
            await future
    finally:
        await producer.stop()
    seen = await read_events(
        kafka_bootstrap,
        USAGE.name,
        match=lambda e: isinstance(e.data, UsageRecorded) and e.data.record_id.startswith(run),
        until=lambda s: len(s) >= len(events),
    )

    # Event for event, but for the trace context: the aiokafka instrumentation, when a test run
    # has installed a tracer earlier in this process, writes a `traceparent` into the headers.
    def plain(some: list[CloudEvent[Any]]) -> list[dict[str, Any]]:
        return [e.model_dump(exclude={"traceparent"}) for e in sorted(some, key=lambda e: e.id)]

    assert plain(seen) == plain(events)
