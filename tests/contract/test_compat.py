"""breaking_changes on hand-made schema pairs: a consumer of `old` receives events made under `new`."""

import copy
import json
from pathlib import Path
from typing import Any

from billing_events.compat import breaking_changes

SCHEMAS = Path(__file__).resolve().parents[2] / "libs" / "billing-events" / "schemas"


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = True, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(required), **extra}
    if closed:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
OLD = obj({"invoice_id": STRING, "email": NULLABLE_STRING}, ("invoice_id",))


def test_identical_schemas_break_nothing() -> None:
    assert breaking_changes(OLD, copy.deepcopy(OLD)) == []


def test_a_removed_property_is_breaking() -> None:
    new = obj({"invoice_id": STRING}, ("invoice_id",))
    assert breaking_changes(OLD, new) == ["email: property removed"]


def test_a_property_no_longer_required_is_breaking() -> None:
    new = obj({"invoice_id": STRING, "email": NULLABLE_STRING})
    assert breaking_changes(OLD, new) == ["invoice_id: no longer required (consumers expect it)"]


def test_an_optional_property_made_required_is_not_breaking() -> None:
    new = obj({"invoice_id": STRING, "email": STRING}, ("invoice_id", "email"))
    assert breaking_changes(OLD, new) == []


def test_a_new_property_breaks_consumers_that_forbid_extras() -> None:
    required = obj({"invoice_id": STRING, "email": NULLABLE_STRING, "po_number": STRING}, ("invoice_id", "po_number"))
    optional = obj({"invoice_id": STRING, "email": NULLABLE_STRING, "po_number": NULLABLE_STRING}, ("invoice_id",))
    assert breaking_changes(OLD, optional) == ["po_number: property added; old consumers reject unknown properties (additionalProperties: false)"]
    assert breaking_changes(OLD, required) == [
        "po_number: property added; old consumers reject unknown properties (additionalProperties: false)",
        "po_number: property added as required; events already on the topics lack it (add it optional)",
    ]


def test_a_new_property_is_fine_for_consumers_that_tolerate_extras() -> None:
    old = obj({"invoice_id": STRING}, ("invoice_id",), closed=False)
    new = obj({"invoice_id": STRING, "po_number": STRING}, ("invoice_id",), closed=False)
    assert breaking_changes(old, new) == []
    required = obj({"invoice_id": STRING, "po_number": STRING}, ("invoice_id", "po_number"), closed=False)
    assert breaking_changes(old, required) == ["po_number: property added as required; events already on the topics lack it (add it optional)"]
    typed_extras = obj({"invoice_id": STRING}, ("invoice_id",), closed=False, additionalProperties={"type": "string"})
    number = obj({"invoice_id": STRING, "po_number": {"type": "number"}}, ("invoice_id",), closed=False, additionalProperties={"type": "string"})
    assert breaking_changes(typed_extras, number) == ["po_number: type changed from string to number"]


def test_opening_a_closed_object_is_breaking() -> None:
    new = copy.deepcopy(OLD)
    del new["additionalProperties"]
    assert breaking_changes(OLD, new) == ["(root): accepts unknown properties now; old consumers reject them (additionalProperties: false)"]


def test_a_type_change_is_breaking() -> None:
    new = obj({"invoice_id": {"type": "number"}, "email": NULLABLE_STRING}, ("invoice_id",))
    assert breaking_changes(OLD, new) == ["invoice_id: type changed from string to number"]


def test_integer_to_number_widens_but_number_to_integer_narrows() -> None:
    integer, number = obj({"n": {"type": "integer"}}), obj({"n": {"type": "number"}})
    assert breaking_changes(integer, number) == ["n: type changed from integer to number"]
    assert breaking_changes(number, integer) == []


def test_becoming_nullable_is_breaking_and_dropping_null_is_not() -> None:
    not_null = obj({"invoice_id": STRING, "email": STRING}, ("invoice_id",))
    assert breaking_changes(not_null, OLD) == ["email: now also allows type null"]
    assert breaking_changes(OLD, not_null) == []


def test_a_widened_enum_is_breaking_and_names_the_new_value() -> None:
    old = obj({"status": {"type": "string", "enum": ["pending", "active"]}}, ("status",))
    widened = obj({"status": {"type": "string", "enum": ["pending", "active", "expired"]}}, ("status",))
    narrowed = obj({"status": {"type": "string", "enum": ["active"]}}, ("status",))
    problems = breaking_changes(old, widened)
    assert len(problems) == 1 and problems[0].startswith('status: enum gained: "expired"')
    assert breaking_changes(old, narrowed) == []
    assert breaking_changes(old, obj({"status": STRING}, ("status",))) == ['status: no longer limited to "pending", "active"']


def test_a_changed_const_is_breaking() -> None:
    old = obj({"type": {"type": "string", "const": "billing.invoice.issued.v1"}})
    new = obj({"type": {"type": "string", "const": "billing.invoice.issued.v2"}})
    assert len(breaking_changes(old, new)) == 1
    assert "const changed" in breaking_changes(old, new)[0]


def _with_money(amount: dict[str, Any]) -> dict[str, Any]:
    money = obj({"amount": amount, "currency": STRING}, ("amount", "currency"))
    line = obj({"net": {"$ref": "#/$defs/Money"}}, ("net",))
    root = obj({"total": {"$ref": "#/$defs/Money"}, "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}}, ("total", "lines"))
    return {**root, "$defs": {"Money": money, "Line": line}}


def test_a_change_behind_a_ref_is_found_at_every_use() -> None:
    old = _with_money({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"})
    new = _with_money({"type": "number"})
    assert breaking_changes(old, new) == [
        "total.amount: type changed from string to number",
        "lines[].net.amount: type changed from string to number",
    ]


def test_a_dropped_pattern_is_breaking_and_an_added_one_is_not() -> None:
    with_pattern = _with_money({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"})
    without = _with_money({"type": "string"})
    assert breaking_changes(with_pattern, without)[0] == "total.amount: pattern '^-?[0-9]+(\\\\.[0-9]+)?$' dropped"
    assert breaking_changes(without, with_pattern) == []


def test_an_inlined_ref_is_the_same_schema() -> None:
    old = _with_money({"type": "string"})
    new = copy.deepcopy(old)
    new["properties"]["total"] = copy.deepcopy(old["$defs"]["Money"])
    assert breaking_changes(old, new) == []


def test_array_items_are_compared() -> None:
    old = obj({"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5}})
    new = obj({"tags": {"type": "array", "items": {"type": "integer"}, "maxItems": 10}})
    assert breaking_changes(old, new) == ["tags: maxItems loosened from 5 to 10", "tags[]: type changed from string to integer"]


def test_recursive_schemas_terminate() -> None:
    tree = {"$defs": {"Node": obj({"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}})}, "$ref": "#/$defs/Node"}
    assert breaking_changes(tree, copy.deepcopy(tree)) == []


def test_recursion_through_a_nullable_union_terminates_and_still_finds_changes() -> None:
    def tree(label: dict[str, Any]) -> dict[str, Any]:
        parent = {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}
        return {"$defs": {"Node": obj({"label": label, "parent": parent})}, "$ref": "#/$defs/Node"}

    assert breaking_changes(tree(STRING), tree(STRING)) == []
    assert breaking_changes(tree(STRING), tree({"type": "integer"})) == ["label: type changed from string to integer"]


def test_documentation_changes_are_not_breaking() -> None:
    old = _with_money({"type": "string"})
    new = copy.deepcopy(old)
    new["title"] = "Renamed"
    new["description"] = "Now documented."
    new["$defs"]["Money"]["properties"]["amount"].update(title="Amount due", description="Decimal string.", examples=["1516.25"], default="0")
    new["properties"]["total"]["description"] = "Gross."
    assert breaking_changes(old, new) == []


def test_the_committed_invoice_schema_catches_edits() -> None:
    old = json.loads((SCHEMAS / "billing.invoice.issued.v1.json").read_text(encoding="utf-8"))
    assert breaking_changes(old, copy.deepcopy(old)) == []

    new = copy.deepcopy(old)
    new["$defs"]["Party"]["properties"]["phone"] = NULLABLE_STRING
    new["$defs"]["Party"]["required"].append("phone")
    del new["$defs"]["InvoiceLine"]["properties"]["end_customer_id"]
    new["$defs"]["Money"]["properties"]["amount"] = {"type": "number"}
    problems = breaking_changes(old, new)
    assert "data.seller.phone: property added as required; events already on the topics lack it (add it optional)" in problems
    assert "data.buyer.phone: property added as required; events already on the topics lack it (add it optional)" in problems
    assert "data.lines[].end_customer_id: property removed" in problems
    assert "data.total.amount: type changed from string to number" in problems
