"""Batched content mode: many events of one tenant and partition key in one Kafka message (a JSON
array of structured-mode CloudEvents), decoded back to the same events; a single-event message
decodes as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from billing_events import BATCH_CONTENT_TYPE, EnvelopeError, UsageRecorded, account_id, from_kafka_many, is_batch, new_event, to_kafka, to_kafka_batch
from billing_events.envelope import CloudEvent, binary_of, from_kafka
from billing_events.topics import USAGE

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def usage(n: int, tenant: str = "partner-a", customer: str = "c1") -> list[CloudEvent[UsageRecorded]]:
    account = account_id(tenant, customer)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    return [
        new_event(
            UsageRecorded(
                record_id=f"r{i}", account_id=account, partner_id=tenant, product_code="AZ-VM", quantity="1.25", occurred_at=start + timedelta(minutes=i)
            ),
            source="usage-ingest",
            tenant=tenant,
            subject=f"r{i}",
            traceparent=TRACEPARENT if i % 2 else None,
        )
        for i in range(n)
    ]


def test_a_batch_message_round_trips_every_event_in_order() -> None:
    events = usage(7)
    message = to_kafka_batch(events)
    assert message.topic == USAGE.name and message.key == events[0].key.encode()
    headers = dict(message.headers)
    assert headers["content-type"] == BATCH_CONTENT_TYPE.encode() and headers["billing_batch_size"] == b"7"
    assert not [name for name, _ in message.headers if name.startswith("ce_")]  # the attributes are in the value, per event
    assert is_batch(message.headers) and not is_batch(to_kafka(events[0]).headers)
    elements = json.loads(message.value)
    assert [e["id"] for e in elements] == [e.id for e in events]
    assert "traceparent" not in elements[0] and elements[1]["traceparent"] == TRACEPARENT  # each event keeps its own trace
    assert from_kafka_many(message.headers, message.value) == events


def test_a_single_event_message_decodes_as_one_event() -> None:
    event = usage(1)[0]
    message = to_kafka(event)
    assert from_kafka_many(message.headers, message.value) == [event] == [from_kafka(message.headers, message.value, UsageRecorded)]


def test_a_batch_is_of_one_topic_tenant_and_key() -> None:
    with pytest.raises(ValueError, match="share"):
        to_kafka_batch([*usage(2), *usage(2, customer="c2")])
    with pytest.raises(ValueError, match="share"):
        to_kafka_batch([*usage(2), *usage(2, tenant="partner-b")])
    with pytest.raises(ValueError, match="at least one"):
        to_kafka_batch([])


def test_an_invalid_batch_is_an_envelope_error() -> None:
    events = usage(3)
    message = to_kafka_batch(events)
    with pytest.raises(EnvelopeError, match="not a JSON array"):
        from_kafka_many(message.headers, b'{"id": "x"}')
    with pytest.raises(EnvelopeError):
        from_kafka_many(message.headers, b"[not json")
    elements = json.loads(message.value)
    elements[1]["type"] = "billing.nothing.v1"
    with pytest.raises(EnvelopeError, match="unknown event type"):
        from_kafka_many(message.headers, json.dumps(elements).encode())
    elements = json.loads(message.value)
    del elements[2]["data"]["quantity"]
    with pytest.raises(EnvelopeError, match="invalid billing.usage.recorded.v1"):
        from_kafka_many(message.headers, json.dumps(elements).encode())


def test_an_element_as_a_binary_message_decodes_as_that_event() -> None:
    """What a consumer dead-letters for one event out of a batch: its attributes as `ce_*` headers."""
    event = usage(2)[1]
    headers, value = binary_of(json.loads(to_kafka_batch([event]).value)[0])
    assert from_kafka(headers, value, UsageRecorded) == event
