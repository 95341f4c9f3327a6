"""The AsyncAPI 3 document: committed, up to date, complete (every topic a channel, every event
type a message), its payloads the committed JSON Schemas, every reference resolving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from billing_events import asyncapi
from billing_events.registry import EVENT_MODELS
from billing_events.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "libs" / "billing-events" / "asyncapi.yaml"
SCHEMAS = ROOT / "libs" / "billing-events" / "schemas"
SPEC = Path(__file__).with_name("asyncapi-3.0.0.schema.json")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_committed_document_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, "-m", "billing_events.asyncapi", "--check", str(DOCUMENT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_on_a_stale_document(tmp_path: Path) -> None:
    stale = tmp_path / "asyncapi.yaml"
    assert asyncapi.main(["--check", str(stale)]) == 1  # missing
    assert asyncapi.main(["--write", str(stale)]) == 0
    assert asyncapi.main(["--check", str(stale)]) == 0
    stale.write_text(stale.read_text().replace("billing.invoice.issued.v1", "billing.invoice.issued.v0"))
    assert asyncapi.main(["--check", str(stale)]) == 1


def test_is_a_valid_asyncapi_3_document(document: dict[str, Any]) -> None:
    # The official AsyncAPI 3.0.0 JSON Schema (@asyncapi/specs 6.11.1, Apache-2.0), bindings included.
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    errors = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert not errors, errors[:10]
    # The schema does reject what AsyncAPI 3 does not allow.
    broken = json.loads(json.dumps(document))
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
    assert not validator.is_valid(broken)


def test_every_topic_is_a_channel_and_every_event_a_message(document: dict[str, Any]) -> None:
    channels = document["channels"]
    assert {c["address"] for c in channels.values()} == {t.name for t in ALL_TOPICS}
    messages = document["components"]["messages"]
    for model in EVENT_MODELS:
        message = messages[model.__name__]
        assert message["name"] == model.event_type
        assert message["headers"]["properties"]["ce_type"]["const"] == model.event_type
        assert f"#/components/messages/{model.__name__}" in [m["$ref"] for m in channels[model.topic.name]["messages"].values()]
        assert channels[model.topic.name]["bindings"]["kafka"]["partitions"] == model.topic.partitions


def test_payloads_are_the_committed_json_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model in EVENT_MODELS:
        committed = json.loads((SCHEMAS / f"{model.event_type}.json").read_text())
        defs = committed["$defs"]
        rewrite = json.loads(json.dumps(defs).replace('"#/$defs/', '"#/components/schemas/'))
        assert document["components"]["messages"][model.__name__]["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        for name, schema in rewrite.items():
            assert schemas[name] == schema, (model.event_type, name)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, ref
        node = node[part]
    return node


def test_every_reference_resolves_and_operations_use_their_channel(document: dict[str, Any]) -> None:
    for ref in _refs(document):
        _resolve(document, ref)
    for name, operation in document["operations"].items():
        assert operation["action"] == "send"
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
