"""The CloudEvents 1.0 envelope and its Kafka protocol binding (binary content mode).

On Kafka the attributes travel as `ce_*` headers, the data as the JSON message value, and the
partition key (the buyer's billing account) as the message key. `tenant` (the partner) and
`traceparent` (W3C trace context) are extension attributes.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from billing_events.topics import Topic

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


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
