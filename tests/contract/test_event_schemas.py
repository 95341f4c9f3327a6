"""The committed event contract: schemas current, golden examples valid, nothing released broken."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from billing_events.compat import compare_directory
from billing_events.envelope import event_from_json, event_to_json
from billing_events.money import DECIMAL_PATTERN
from billing_events.registry import REGISTRY
from billing_events.schemas import check, data_schema

LIB = Path(__file__).resolve().parents[2] / "libs" / "billing-events"
SCHEMAS = LIB / "schemas"
RELEASED = SCHEMAS / "released"
EXAMPLES = LIB / "examples"
TYPES = sorted(REGISTRY)


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def validator(event_type: str) -> Draft202012Validator:
    schema = load(SCHEMAS / f"{event_type}.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_committed_schemas_match_the_models() -> None:
    problems = check(SCHEMAS)
    assert problems == [], (
        "event schemas are out of date with the models; run\n"
        "  python -m billing_events.schemas --write libs/billing-events/schemas\n"
        "and commit the result (then check the breaking-change test below):\n  " + "\n  ".join(problems)
    )


def test_every_event_type_has_a_golden_example() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.json")) == [f"{t}.json" for t in TYPES]


@pytest.mark.parametrize("event_type", TYPES)
def test_golden_example_validates_against_its_schema(event_type: str) -> None:
    document = load(EXAMPLES / f"{event_type}.json")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(event_type).iter_errors(document)]
    assert errors == []
    assert list(Draft202012Validator(data_schema(REGISTRY[event_type])).iter_errors(document["data"])) == []


@pytest.mark.parametrize("event_type", TYPES)
def test_golden_example_parses_with_the_model_and_reserialises_unchanged(event_type: str) -> None:
    text = (EXAMPLES / f"{event_type}.json").read_text(encoding="utf-8")
    event = event_from_json(text, REGISTRY[event_type])
    assert event.type == event_type
    assert json.loads(event_to_json(event)) == json.loads(text)


@pytest.mark.parametrize("event_type", TYPES)
def test_golden_example_carries_no_floats(event_type: str) -> None:
    def refuse(text: str) -> None:
        raise AssertionError(f"float {text} in {event_type} example: money and quantities are decimal strings")

    json.loads((EXAMPLES / f"{event_type}.json").read_text(encoding="utf-8"), parse_float=refuse)


def test_money_on_the_wire_is_a_pattern_checked_string() -> None:
    for event_type in TYPES:
        money = load(SCHEMAS / f"{event_type}.json")["$defs"].get("Money")
        if money is not None:
            assert money["properties"]["amount"] == {"pattern": DECIMAL_PATTERN, "title": "Amount", "type": "string"}
    example = load(EXAMPLES / "billing.invoice.issued.v1.json")
    example["data"]["total"]["amount"] = 1516.25
    assert not validator("billing.invoice.issued.v1").is_valid(example)
    example["data"]["total"]["amount"] = "1,516.25"
    assert not validator("billing.invoice.issued.v1").is_valid(example)


def test_schema_refuses_another_type_string() -> None:
    example = load(EXAMPLES / "billing.invoice.issued.v1.json")
    example["type"] = "billing.invoice.issued.v2"
    assert not validator("billing.invoice.issued.v1").is_valid(example)


def test_worked_example_a_totals_add_up() -> None:
    data = load(EXAMPLES / "billing.invoice.issued.v1.json")["data"]
    nets = sum(Decimal(line["net"]["amount"]) for line in data["lines"])
    assert nets == Decimal(data["net_total"]["amount"]) == Decimal("1516.25")
    assert Decimal(data["total"]["amount"]) == nets + Decimal(data["tax_total"]["amount"])
    closed = load(EXAMPLES / "billing.period.closed.v1.json")["data"]
    assert sum(Decimal(line["amount"]["amount"]) for line in closed["lines"]) == Decimal("1516.25")


def test_no_breaking_change_against_the_released_schemas() -> None:
    problems = compare_directory(RELEASED)
    assert problems == [], (
        "these model changes would break consumers of the released schemas; publish a new event type (.v2) "
        "instead (see libs/billing-events/README.md):\n  " + "\n  ".join(problems)
    )


def test_every_released_schema_is_a_valid_schema() -> None:
    released = sorted(RELEASED.glob("*.json"))
    assert released, "libs/billing-events/schemas/released/ is empty"
    for path in released:
        Draft202012Validator.check_schema(load(path))
