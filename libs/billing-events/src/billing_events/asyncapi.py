"""The AsyncAPI 3.0 document of the event contract, generated from the models: one channel per
Kafka topic, one message per event type (payload: the event's `data` schema, the same JSON Schema
as in `schemas/`; headers: the CloudEvents Kafka binding), one `send` operation per producing
service and topic. For the people who build consumers (accounting tools, partner integrations).

    python -m billing_events.asyncapi --write libs/billing-events/asyncapi.yaml
    python -m billing_events.asyncapi --check libs/billing-events/asyncapi.yaml   # exit 1: stale

Writing YAML needs PyYAML (a development tool; the package itself needs pydantic alone).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from billing_events.envelope import BATCH_CONTENT_TYPE, BATCH_SIZE_HEADER, BATCH_TENANT_HEADER, CONTENT_TYPE, SPEC_VERSION, EventData
from billing_events.registry import EVENT_MODELS
from billing_events.schemas import data_schema
from billing_events.topics import ALL_TOPICS, DEAD_LETTER, USAGE, Topic

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_REF = "#/components/schemas/"

# events/<module>.py groups the models by the service that produces them.
PRODUCERS = {
    "ingest": "usage-ingest",
    "rating": "rating",
    "invoicing": "invoicing",
    "payments": "payments",
    "dunning": "dunning",
    "notify": "notify",
    "auth": "billing-cli",
}

DESCRIPTION = (
    "Every event the billing platform publishes on Kafka. Each message is a CloudEvents 1.0 event in the binary content mode of "
    "the Kafka protocol binding: the message value is the event's `data` as JSON (the payload below), the attributes travel as "
    "`ce_*` headers, and the message key is the buyer's billing account id, so all events of one account are in order on one "
    "partition.\n\n"
    "Consumers: deduplicate on `ce_id` (a redelivered or replayed event keeps its id); dispatch on `ce_type` and skip types you "
    "do not know; ignore data fields you do not know (a producer may add optional fields); money is "
    '`{"amount": "<decimal string>", "currency": "<ISO 4217>"}`, never a float. A breaking change ships as a new type '
    "(`....v2`) beside the old one.\n\n"
    f"Batched messages: on `{USAGE.name}` a message may instead be in batched content mode (`content-type: "
    f"{BATCH_CONTENT_TYPE}`, no `ce_*` headers): its value is a JSON array of structured-mode CloudEvents (each an object with "
    "its own `id`, `type`, `source`, `time`, `tenant`, `subject`, `traceparent` and `data`), all of one tenant and one key, "
    "in order. Handle it as its events, one after the other, deduplicating each on its `id`. Single-event messages stay "
    "valid on every topic.\n"
)

# The topics whose producers may publish batch messages (billing_events.envelope.to_kafka_batch).
BATCHED_TOPICS: tuple[Topic, ...] = (USAGE,)


def producer_of(model: type[EventData]) -> str:
    module = model.__module__.rsplit(".", 1)[-1]
    return PRODUCERS.get(module, module)


def key_field(model: type[EventData]) -> str:
    """The payload field the message key is taken from, read off `partition_key()`."""
    try:
        source = inspect.getsource(model.partition_key)
    except (OSError, TypeError):
        return "partition_key()"
    found = re.search(r"return self\.([\w.]+)", source)
    return found.group(1) if found else "partition_key()"


def _summary(model: type[EventData]) -> str:
    doc = (model.__doc__ or "").strip()
    return doc.split("\n\n", 1)[0].replace("\n", " ") if doc else model.__name__


def headers_schema(event_type: str | None) -> dict[str, Any]:
    """The Kafka headers of one event type (CloudEvents Kafka binding, binary mode)."""
    ce_type: dict[str, Any] = {"type": "string", "description": "The versioned event type."}
    if event_type is not None:
        ce_type["const"] = event_type
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_tenant", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": SPEC_VERSION},
            "ce_id": {"type": "string", "description": "Unique per event; kept on redelivery and replay: deduplicate on it."},
            "ce_source": {"type": "string", "description": "The producing service, e.g. /services/invoicing."},
            "ce_type": ce_type,
            "ce_time": {"type": "string", "format": "date-time", "description": "When the fact happened (ISO 8601 with offset)."},
            "ce_tenant": {"type": "string", "description": "The partner the event belongs to."},
            "ce_subject": {"type": "string", "description": "The entity the event is about, when set."},
            "content-type": {"type": "string", "const": CONTENT_TYPE},
            "traceparent": {"type": "string", "description": "W3C trace context of the request that caused the event, when set."},
        },
    }


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (SCHEMA_REF + v.removeprefix("#/$defs/") if k == "$ref" and isinstance(v, str) else _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in schemas and schemas[name] != schema:
        raise ValueError(f"two different schemas are both called {name!r}: rename one model")
    schemas[name] = schema


def _message(model: type[EventData]) -> dict[str, Any]:
    return {
        "name": model.event_type,
        "title": model.__name__,
        "summary": _summary(model),
        "contentType": CONTENT_TYPE,
        "headers": headers_schema(model.event_type),
        "payload": {"$ref": SCHEMA_REF + model.__name__},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"The partition key: the payload's `{key_field(model)}`."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-producer": producer_of(model),
    }


def _dead_letter_message() -> dict[str, Any]:
    headers = headers_schema(None)
    headers["properties"] = {
        **headers["properties"],
        "dlq_service": {"type": "string", "description": "The consumer group (service) that could not apply the event."},
        "dlq_topic": {"type": "string", "description": "Where the event was read."},
        "dlq_partition": {"type": "string"},
        "dlq_offset": {"type": "string"},
        "dlq_error": {"type": "string", "description": "Why it could not be applied (truncated to 4000 characters)."},
    }
    headers["required"] = ["dlq_service", "dlq_topic", "dlq_partition", "dlq_offset", "dlq_error"]
    return {
        "name": "billing.deadletter",
        "title": "DeadLetter",
        "summary": "An event a consumer could not apply: the original value, key and headers, plus the dlq_* headers.",
        "contentType": CONTENT_TYPE,
        "headers": headers,
        "payload": {"description": "The original message value, unchanged."},
    }


def _batch_message(topic: Topic, models: list[type[EventData]]) -> dict[str, Any]:
    """Many events of `topic` in one message: batched content mode (a JSON array of structured events)."""
    attributes = {
        "specversion": {"type": "string", "const": SPEC_VERSION},
        "id": {"type": "string", "description": "Unique per event: deduplicate on it."},
        "source": {"type": "string"},
        "type": {"type": "string", "enum": [m.event_type for m in models]},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "const": CONTENT_TYPE},
        "tenant": {"type": "string"},
        "subject": {"type": "string"},
        "traceparent": {"type": "string", "description": "W3C trace context of the request that caused this event, when set."},
        "data": {"oneOf": [{"$ref": SCHEMA_REF + m.__name__} for m in models], "description": "The data of the event's `type`."},
    }
    return {
        "name": f"{topic.name}.batch",
        "title": "EventBatch",
        "summary": "Several events of one tenant and key in one message, in order (CloudEvents batched content mode).",
        "contentType": BATCH_CONTENT_TYPE,
        "headers": {
            "type": "object",
            "required": ["content-type"],
            "properties": {
                "content-type": {"type": "string", "const": BATCH_CONTENT_TYPE},
                BATCH_SIZE_HEADER: {"type": "string", "description": "The number of events in the message (informative)."},
                BATCH_TENANT_HEADER: {"type": "string", "description": "The partner the events belong to (informative)."},
                "traceparent": {"type": "string", "description": "W3C trace context of the producing relay, when set."},
            },
        },
        "payload": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["specversion", "id", "source", "type", "time", "tenant", "data"], "properties": attributes},
        },
        "bindings": {
            "kafka": {"key": {"type": "string", "description": "The partition key of every event in the message."}, "bindingVersion": KAFKA_BINDING_VERSION}
        },
        "x-producer": ", ".join(sorted({producer_of(m) for m in models})),
    }


def _keyed_by(models: list[type[EventData]]) -> str:
    if not models:
        return "Each message keeps the key of the event it carries."
    fields = sorted({key_field(m) for m in models})
    return "Messages are keyed by the payload's " + " / ".join(f"`{f}`" for f in fields) + ": one key's events stay in order on one partition."


def build() -> dict[str, Any]:
    """The AsyncAPI document as a dictionary (deterministic: same models, same document)."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    by_topic: dict[str, list[type[EventData]]] = {t.name: [] for t in ALL_TOPICS}
    for model in EVENT_MODELS:
        schema = data_schema(model)
        for name, sub in schema.pop("$defs", {}).items():
            _add_schema(schemas, name, _rewrite_refs(sub))
        schema.pop("$schema", None)
        _add_schema(schemas, model.__name__, _rewrite_refs(schema))
        messages[model.__name__] = _message(model)
        by_topic.setdefault(model.topic.name, []).append(model)
    messages["DeadLetter"] = _dead_letter_message()
    batch_names = {}
    for topic in BATCHED_TOPICS:
        batch_names[topic.name] = name = f"{''.join(part.title() for part in topic.name.split('.')[1:])}Batch"
        messages[name] = _batch_message(topic, by_topic[topic.name])

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        cid = topic.name
        names = ["DeadLetter"] if topic == DEAD_LETTER else [m.__name__ for m in by_topic[topic.name]]
        if topic.name in batch_names:
            names.append(batch_names[topic.name])
        if not names:
            continue
        channels[cid] = {
            "address": topic.name,
            "title": topic.name,
            "description": f"Kafka topic {topic.name}, {topic.partitions} partition(s). " + _keyed_by(by_topic[topic.name]),
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        producers: dict[str, list[str]] = {"every-consumer": ["DeadLetter"]} if topic == DEAD_LETTER else {}
        for model in by_topic[topic.name]:
            producers.setdefault(producer_of(model), []).append(model.__name__)
        if topic.name in batch_names:
            for service in sorted({producer_of(m) for m in by_topic[topic.name]}):
                producers.setdefault(service, []).append(batch_names[topic.name])
        for service, models in sorted(producers.items()):
            operations[f"{service}.send.{topic.name}"] = {
                "action": "send",
                "title": f"{service} publishes on {topic.name}",
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"} for name in models],
            }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Billing platform events",
            "version": _version(),
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "localhost:29092",
                "protocol": "kafka",
                "description": "The Apache Kafka broker of docker-compose.yml; in production, your cluster's bootstrap servers.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())), "schemas": dict(sorted(schemas.items()))},
    }


def _version() -> str:
    try:
        return metadata.version("billing-events")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def dumps(document: dict[str, Any]) -> str:
    import yaml  # a development tool: PyYAML is not a dependency of the package

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    # Through JSON first, so the YAML holds plain types only.
    plain = json.loads(json.dumps(document))
    header = "# Generated by `python -m billing_events.asyncapi --write`; do not edit by hand.\n"
    return header + yaml.dump(plain, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing_events.asyncapi", description="Generate or check the AsyncAPI 3 document of the events.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="FILE", type=Path, help="write the document to FILE")
    action.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if FILE differs from the models")
    args = parser.parse_args(argv)
    text = dumps(build())
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}")
        return 0
    if not args.check.is_file() or args.check.read_text(encoding="utf-8") != text:
        print(f"{args.check} is out of date: run python -m billing_events.asyncapi --write {args.check}")
        return 1
    print(f"{args.check} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
