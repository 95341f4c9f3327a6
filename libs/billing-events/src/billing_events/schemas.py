"""JSON Schemas (draft 2020-12) of every event, generated from the models.

One file per event type, named after the type string (`billing.invoice.issued.v1.json`). Each file
describes the whole structured-mode CloudEvent; the `data` model and the parts it uses sit in
`$defs`, so a Kafka consumer that only sees the message value validates it against
`$defs/<ModelName>` (reachable from `properties.data.$ref`).

    python -m billing_events.schemas --write DIR   # regenerate the committed schemas
    python -m billing_events.schemas --check DIR   # exit 1 when DIR is not up to date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from billing_events.envelope import SPEC_VERSION, EventData, envelope_class
from billing_events.registry import EVENT_MODELS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# The envelope model carries no descriptions of its own; consumers reading a schema need them.
_ENVELOPE_DOCS: dict[str, str] = {
    "specversion": "CloudEvents specification version.",
    "id": "Unique per source; a redelivered or replayed event keeps its id (consumers dedupe on it).",
    "source": "The producing service.",
    "type": "The versioned event type; on Kafka the ce_type header.",
    "subject": "The entity the event is about, when useful for filtering.",
    "time": "When the fact happened, timezone-aware.",
    "datacontenttype": "Media type of data; on Kafka the content-type header.",
    "tenant": "Extension attribute: the partner the event belongs to.",
    "traceparent": "Extension attribute: W3C trace context of the producing request.",
    "data": "The event payload; on Kafka the message value.",
}


def data_schema(model: type[EventData]) -> dict[str, Any]:
    """The schema of one event's `data` alone: what a Kafka message value holds."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def event_schema(model: type[EventData]) -> dict[str, Any]:
    """The schema of one event type as a structured-mode CloudEvent."""
    schema = envelope_class(model).model_json_schema(ref_template="#/$defs/{model}")
    properties: dict[str, dict[str, Any]] = schema["properties"]
    # The generic envelope accepts any type string; one event's schema pins its own.
    properties["type"] = {"const": model.event_type, "title": "Type", "type": "string"}
    properties["specversion"] = {"const": SPEC_VERSION, "default": SPEC_VERSION, "title": "Specversion", "type": "string"}
    for name, text in _ENVELOPE_DOCS.items():
        properties[name]["description"] = text
    schema["title"] = model.event_type
    schema["description"] = (
        f"{model.__name__} as a CloudEvents 1.0 structured-mode event. On Kafka (binary mode) the "
        f"attributes travel as ce_* headers and data as the value of topic {model.topic.name}."
    )
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every registered event type's schema, keyed by file name."""
    return {f"{model.event_type}.json": event_schema(model) for model in EVENT_MODELS}


def dumps(schema: dict[str, Any]) -> str:
    """The canonical text of a schema, so regenerating an unchanged model changes no byte."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    expected = all_schemas()
    for name, schema in expected.items():
        (directory / name).write_text(dumps(schema), encoding="utf-8")
    # A schema of a type no longer registered would otherwise linger and look current.
    for stale in sorted(set(_committed_names(directory)) - set(expected)):
        (directory / stale).unlink()
    return sorted(expected)


def check(directory: Path) -> list[str]:
    """What differs between DIR and freshly generated schemas; empty when up to date."""
    expected = all_schemas()
    committed = set(_committed_names(directory))
    problems: list[str] = []
    for name in sorted(expected):
        path = directory / name
        if name not in committed:
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != dumps(expected[name]):
            problems.append(f"differs: {path}")
    for name in sorted(committed - set(expected)):
        problems.append(f"stale (no such event type): {directory / name}")
    return problems


def _committed_names(directory: Path) -> list[str]:
    # Only the top level: subfolders such as released/ hold other baselines.
    if not directory.is_dir():
        return []
    return [path.name for path in directory.glob("*.json") if path.is_file()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_events.schemas",
        description="Generate or check the committed event JSON Schemas.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="DIR", type=Path, help="write one schema per event type into DIR")
    action.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if DIR differs from the models")
    args = parser.parse_args(argv)
    if args.write is not None:
        names = write(args.write)
        print(f"wrote {len(names)} schemas to {args.write}")
        return 0
    problems = check(args.check)
    return report(
        problems,
        failed=f"schemas are out of date: run python -m billing_events.schemas --write {args.check}",
        passed=f"{len(all_schemas())} schemas up to date in {args.check}",
    )


def report(problems: Sequence[str], *, failed: str, passed: str) -> int:
    """A check's exit status: print each problem and then `failed` (1), or `passed` when there is none (0)."""
    for problem in problems:
        print(problem)
    print(failed if problems else passed)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
