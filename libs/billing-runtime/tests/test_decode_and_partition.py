"""Unit tests of the consumer's batch decode and the producer's partitioner: the fast paths give
exactly what the one-at-a-time paths give."""

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing_events import CloudEvent, EnvelopeError, UsageRecorded, attributes_from_headers, new_event, to_kafka
from billing_runtime.inbox import Route, byte_bounded
from billing_runtime.kafka import _DEFAULT_PARTITIONER, CachedPartitioner

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def usage_messages(n: int) -> list[tuple[dict[str, str], bytes]]:
    base = datetime(2026, 10, 2, tzinfo=UTC)
    messages = []
    for i in range(n):
        data = UsageRecorded(
            record_id=f"r{i}", account_id=f"acc-{i % 3}", partner_id="t", product_code="GB", quantity=Decimal("1.25"), occurred_at=base + timedelta(seconds=i)
        )
        m = to_kafka(new_event(data, source="usage-ingest", tenant="t", subject=f"r{i}", traceparent=TRACEPARENT if i % 2 else None))
        messages.append((attributes_from_headers(m.headers), m.value))
    return messages


def test_a_batch_decodes_to_the_events_one_at_a_time_gives_and_a_poison_gets_its_own_error() -> None:
    route = Route(UsageRecorded, handler=lambda session, event: None)  # type: ignore[arg-type,return-value]  # a handler never called
    messages = usage_messages(6)
    one_by_one = [route.decode(dict(attrs), value) for attrs, value in messages]
    batch = route.decode_many([dict(a) for a, _ in messages], [v for _, v in messages])
    assert batch == one_by_one and all(type(e) is route.envelope for e in batch)
    first, second = batch[0], batch[1]
    assert isinstance(first, CloudEvent) and isinstance(second, CloudEvent)
    assert second.traceparent == TRACEPARENT and first.subject == "r0" and first.data.quantity == Decimal("1.25")

    # Bad data, a bad attribute, an unknown attribute, a `ce_data` header: each refused alone.
    attrs = [dict(a) for a, _ in messages]
    values = [v for _, v in messages]
    values[1] = b'{"record_id": "r1"'
    attrs[2]["time"] = "yesterday"
    attrs[3]["colour"] = "blue"
    attrs[4]["data"] = "{}"
    decoded = route.decode_many(attrs, values)
    assert [isinstance(d, EnvelopeError) for d in decoded] == [False, True, True, True, True, False]
    assert decoded[0] == one_by_one[0] and decoded[5] == one_by_one[5]
    assert "invalid billing.usage.recorded.v1 event" in str(decoded[1])


def test_header_attributes_are_read_as_before() -> None:
    headers = [("ce_id", b"e1"), ("ce_type", b"t"), ("traceparent", b"tp"), ("content-type", b"application/json"), ("ce_custom", b"x"), ("other", b"y")]
    assert attributes_from_headers(headers) == {"id": "e1", "type": "t", "traceparent": "tp", "datacontenttype": "application/json", "custom": "x"}


def test_the_cached_partitioner_picks_the_default_partitioners_partition() -> None:
    partitioner = CachedPartitioner(size=8)  # small: the cache is cleared along the way too
    for _ in range(500):
        key = os.urandom(16)
        for n in (1, 4, 8, 13):
            partitions = list(range(n))
            expected = _DEFAULT_PARTITIONER(key, partitions, partitions)
            assert partitioner(key, partitions, partitions) == expected
            assert partitioner(key, partitions, partitions[:1]) == expected  # by key, whatever is available
    assert partitioner(None, [0, 1, 2], [1]) == 1


def test_byte_bounded_runs_keep_the_order_and_put_an_oversized_message_alone() -> None:
    from aiokafka import ConsumerRecord

    def record(offset: int, size: int) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord("t", 0, offset, 0, 0, None, b"x" * size, None, size, 0, [])

    messages = [record(i, size) for i, size in enumerate([400, 400, 300, 900, 2500, 100, 100, 0, 1000])]
    runs = list(byte_bounded(messages, 1000))
    assert [[m.offset for m in run] for run in runs] == [[0, 1], [2], [3], [4], [5, 6, 7], [8]]
    assert [m for run in runs for m in run] == messages
    assert list(byte_bounded(messages, 10_000)) == [messages]
    assert list(byte_bounded([], 1000)) == []
