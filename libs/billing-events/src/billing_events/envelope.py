"""The CloudEvents 1.0 envelope and its Kafka protocol binding (binary content mode), and the
batched content mode for many events in one message.

On Kafka the attributes travel as `ce_*` headers, the data as the JSON message value, and the
partition key (the buyer's billing account) as the message key. `tenant` (the partner) and
`traceparent` (W3C trace context) are extension attributes.

Batched content mode (`to_kafka_batch`, `from_kafka_many`): a message whose `content-type` header
is `application/cloudevents-batch+json` carries a JSON array of structured-mode CloudEvents (each
a JSON object with all its attributes, its own `id`, `type`, `time`, `traceparent`..., and its
`data`), all of one tenant and one partition key (the message key), in order. It has no `ce_*`
headers; `billing_batch_size` (the number of events) and `billing_tenant` are informative. A
consumer handles a batch message as its events, one after the other. usage-ingest publishes usage
this way (one message per account and chunk of a POST); every other message is one event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import from_json, to_json

from billing_events.topics import Topic

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
BATCH_SIZE_HEADER = "billing_batch_size"
BATCH_TENANT_HEADER = "billing_tenant"


class Part(BaseModel):
    """A structured value inside an event's data (a line, a party).

    Tolerant reader: unknown fields are ignored, so a producer may add an optional field without
    breaking consumers that do not know it yet (the compatibility check enforces "optional")."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class EventData(BaseModel):
    """Base class of every event's data. Subclasses set the type string and topic.

    Unknown fields are ignored (see `Part`); a new field must be optional with a default, because
    events already on the topics lack it and are replayed through new consumers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[Topic]
    tenant_field: ClassVar[str | None] = None
    """The data field that names the event's tenant, when one must: every consumer refuses (dead-
    letters, `foreign_tenant`) an event whose field names another tenant than its envelope."""

    def partition_key(self) -> str:
        """The buyer's billing account, so one account's events stay in order."""
        raise NotImplementedError


D = TypeVar("D", bound=EventData)


class CloudEvent(BaseModel, Generic[D]):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: str = SPEC_VERSION
    id: str
    source: str
    type: str
    subject: str | None = None
    time: AwareDatetime
    datacontenttype: str = CONTENT_TYPE
    tenant: str
    traceparent: str | None = None
    data: D

    @property
    def topic(self) -> Topic:
        return type(self.data).topic

    @property
    def key(self) -> str:
        return self.data.partition_key()


def envelope_class(model: type[D]) -> type[CloudEvent[D]]:
    """`CloudEvent` parametrised with one event's data class at run time, so that pydantic
    validates and serialises `data` by that class (the bare generic would see an `EventData`)."""
    return CloudEvent[model]  # type: ignore[valid-type]  # a class known only at run time; the signature types it


def new_event(
    data: D,
    *,
    source: str,
    tenant: str,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> CloudEvent[D]:
    return envelope_class(type(data))(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=type(data).event_type,
        subject=subject,
        time=time or datetime.now(UTC),
        tenant=tenant,
        traceparent=traceparent,
        data=data,
    )


class KafkaMessage(BaseModel):
    """What goes on the wire: topic, key, headers and value, in Kafka binary mode."""

    model_config = ConfigDict(frozen=True)

    topic: str
    key: bytes
    headers: list[tuple[str, bytes]] = Field(default_factory=list)
    value: bytes


def header_texts(event: CloudEvent[Any]) -> list[tuple[str, str]]:
    """The event's Kafka headers (binary mode) as text, in order: `to_kafka` sends them encoded,
    an outbox stores them as JSON without building the message."""
    headers = [
        ("ce_specversion", event.specversion),
        ("ce_id", event.id),
        ("ce_source", event.source),
        ("ce_type", event.type),
        ("ce_time", event.time.isoformat()),
        ("ce_tenant", event.tenant),
        ("content-type", event.datacontenttype),
    ]
    if event.subject is not None:
        headers.append(("ce_subject", event.subject))
    if event.traceparent is not None:
        headers.append(("traceparent", event.traceparent))
    return headers


def to_kafka(event: CloudEvent[Any]) -> KafkaMessage:
    return KafkaMessage(
        topic=event.topic.name,
        key=event.key.encode(),
        headers=[(name, value.encode()) for name, value in header_texts(event)],
        value=event.data.model_dump_json().encode(),
    )


class EnvelopeError(ValueError):
    """A message that is not a valid event of a known type (a poison message)."""


# The headers every event carries, and the attribute each one is (one lookup per header).
_HEADER_ATTRIBUTES = {f"ce_{name}": name for name in ("specversion", "id", "source", "type", "time", "tenant", "subject")} | {
    "traceparent": "traceparent",
    "content-type": "datacontenttype",
}


def attributes_from_headers(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    known = _HEADER_ATTRIBUTES
    for name, raw in headers:
        attribute = known.get(name)
        if attribute is not None:
            found[attribute] = raw.decode()
        elif name.startswith("ce_"):
            found[name[3:]] = raw.decode()
    return found


def from_kafka(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
    value: bytes,
    model: type[D],
) -> CloudEvent[D]:
    attrs = attributes_from_headers(headers)
    _check_type(attrs.get("type"), model)
    try:
        data = model.model_validate_json(value)
        return envelope_class(model)(data=data, **attrs)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"invalid {model.event_type} event: {exc}") from exc


def _check_type(event_type: object, model: type[EventData]) -> None:
    # Data of one type can fit another type's model (a .v2 with the same fields); the declared
    # type decides, so a mismatch is a poison message rather than a silently misread event.
    if event_type != model.event_type:
        raise EnvelopeError(f"event type {event_type!r} is not {model.event_type!r}")


def event_to_json(event: CloudEvent[Any]) -> str:
    """Structured-mode JSON (all attributes and data in one document), for logs and webhooks."""
    return event.model_dump_json()


def event_from_json(text: str | bytes, model: type[D]) -> CloudEvent[D]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise EnvelopeError(f"invalid {model.event_type} event: {exc}") from exc
    _check_type(raw.get("type") if isinstance(raw, dict) else None, model)
    try:
        return envelope_class(model).model_validate(raw)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"invalid {model.event_type} event: {exc}") from exc


# -- batched content mode ----------------------------------------------------------------------


def structured(event: CloudEvent[Any], *, traceparent: str | None = None) -> dict[str, Any]:
    """The event as a structured-mode document (absent optional attributes left out), its data
    still the model (serialised by whoever encodes the document). `traceparent`: the trace to carry
    when the event names none."""
    doc: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.time,
        "datacontenttype": event.datacontenttype,
        "tenant": event.tenant,
    }
    if event.subject is not None:
        doc["subject"] = event.subject
    carried = event.traceparent or traceparent
    if carried is not None:
        doc["traceparent"] = carried
    doc["data"] = event.data
    return doc


def structured_json(event: CloudEvent[Any], *, traceparent: str | None = None) -> bytes:
    """One element of a batch message's value: `structured` as JSON."""
    return to_json(structured(event, traceparent=traceparent))


def batch_headers(tenant: str, count: int) -> list[tuple[str, str]]:
    """A batch message's headers (as text): its content type, and informative size and tenant."""
    return [("content-type", BATCH_CONTENT_TYPE), (BATCH_SIZE_HEADER, str(count)), (BATCH_TENANT_HEADER, tenant)]


def to_kafka_batch(events: Sequence[CloudEvent[Any]]) -> KafkaMessage:
    """Many events of one topic, tenant and partition key as one message in batched content mode
    (in the order given). A consumer applies them as if they had come one message each."""
    if not events:
        raise ValueError("a batch message needs at least one event")
    first = events[0]
    if any(e.topic != first.topic or e.key != first.key or e.tenant != first.tenant for e in events):
        raise ValueError("the events of a batch message share their topic, tenant and partition key")
    return KafkaMessage(
        topic=first.topic.name,
        key=first.key.encode(),
        headers=[(name, value.encode()) for name, value in batch_headers(first.tenant, len(events))],
        value=b"[" + b",".join(structured_json(e) for e in events) + b"]",
    )


def is_batch(headers: Sequence[tuple[str, bytes]]) -> bool:
    """Whether a message is in batched content mode (its `content-type` header says so)."""
    return any(name == "content-type" and value == _BATCH_CONTENT_TYPE_BYTES for name, value in headers)


_BATCH_CONTENT_TYPE_BYTES = BATCH_CONTENT_TYPE.encode()


def batch_elements(value: bytes) -> list[Any]:
    """The elements of a batch message's value (each should be a structured event: a JSON object);
    a value that is not a JSON array is an `EnvelopeError`."""
    try:
        elements = from_json(value)
    except ValueError as exc:
        raise EnvelopeError(f"invalid batch message: {exc}") from exc
    if not isinstance(elements, list):
        raise EnvelopeError("invalid batch message: its value is not a JSON array")
    return elements


def from_structured(element: Any, model: type[D]) -> CloudEvent[D]:
    """One structured-mode event (a batch element, parsed) as the event of `model`."""
    if not isinstance(element, dict):
        raise EnvelopeError(f"invalid {model.event_type} event: a batch element is not an object")
    _check_type(element.get("type"), model)
    try:
        return envelope_class(model).model_validate(element)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"invalid {model.event_type} event: {exc}") from exc


def from_kafka_many(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
    value: bytes,
    models: Callable[[str], type[EventData] | None] | None = None,
) -> list[CloudEvent[Any]]:
    """Every event of a message, in order: the one event of a binary-mode message, or the events
    of a batch message. `models` names the data class of an event type (default: the registry's
    `model_for`); an unknown type or an invalid event is an `EnvelopeError`."""
    if models is None:
        from billing_events.registry import model_for

        models = model_for
    if not is_batch(headers):
        event_type = attributes_from_headers(headers).get("type", "")
        model = models(event_type)
        if model is None:
            raise EnvelopeError(f"unknown event type {event_type!r}")
        return [from_kafka(headers, value, model)]
    events: list[CloudEvent[Any]] = []
    for element in batch_elements(value):
        named = element.get("type") if isinstance(element, dict) else None
        model = models(named) if isinstance(named, str) else None
        if model is None:
            raise EnvelopeError(f"unknown event type {named!r} in a batch message")
        events.append(from_structured(element, model))
    return events


def binary_of(element: Any) -> tuple[list[tuple[str, bytes]], bytes]:
    """A batch element as a binary-mode message's headers and value, as far as it goes (for the
    dead letter of one event out of a batch: its attributes as `ce_*` headers, its data as value)."""
    if not isinstance(element, dict):
        return [], to_json(element)
    headers: list[tuple[str, bytes]] = []
    for name, attribute in element.items():
        if name == "data":
            continue
        text = attribute if isinstance(attribute, str) else to_json(attribute).decode()
        header = "content-type" if name == "datacontenttype" else name if name == "traceparent" else f"ce_{name}"
        headers.append((header, text.encode()))
    return headers, to_json(element.get("data"))
