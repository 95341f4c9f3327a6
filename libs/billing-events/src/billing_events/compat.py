"""Which schema changes break a consumer that already runs.

python -m billing_events.compat --against DIR   # exit 1 if the models break DIR's schemas
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from billing_events.schemas import all_schemas, report

Schema = dict[str, Any]

# Bounds a new schema may only tighten: (keyword, True when a larger value is tighter).
_BOUNDS: tuple[tuple[str, bool], ...] = (
    ("minimum", True),
    ("exclusiveMinimum", True),
    ("minLength", True),
    ("minItems", True),
    ("maximum", False),
    ("exclusiveMaximum", False),
    ("maxLength", False),
    ("maxItems", False),
)


def breaking_changes(old_schema: Schema, new_schema: Schema) -> list[str]:
    """What in `new_schema` would break a consumer written against `old_schema`.

    The direction: consumers built on the old schema receive events produced under the new one.
    A change is breaking when the new schema admits a document the old one rejects, or drops a
    guarantee the old one gave:

    - a property removed, or required before and optional now;
    - a type widened (a new JSON type, including null; "number" where "integer" was) or changed;
    - an enum or const admitting values the old one did not;
    - a pattern or format changed or dropped, a length/item/number bound loosened;
    - a property added where the old object had `additionalProperties: false` (old consumers
      reject unknown properties). Event data is open (our models ignore unknown fields), so
      adding an optional property there is fine; where `additionalProperties` is a schema the
      new property must fit it;
    - a property added as required: replaying events already on the topics through the new
      consumer would fail, so new fields are optional with a default;
    - an object that was closed and is now open.

    Not breaking: narrowing (a property made required, a type or enum narrowed, a bound
    tightened), and annotations (title, description, default, examples). Local `$ref`s into
    `$defs` are followed on both sides; objects, `anyOf`/`oneOf` branches and array items are
    compared recursively. Each entry reads "<path>: <what changed>".
    """
    return _Comparison(old_schema, new_schema).run()


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []
        # $ref pairs being compared further up this path: only these are cut short, so a
        # definition used in several places is still reported at each of them.
        self.active: frozenset[tuple[str, str]] = frozenset()

    def run(self) -> list[str]:
        self.compare(self.old_root, self.new_root, "")
        return self.problems

    def report(self, path: str, text: str) -> None:
        self.problems.append(f"{path or '(root)'}: {text}")

    def compare(self, old: Schema | bool, new: Schema | bool, path: str) -> None:
        if old is True or old == {}:
            return
        if old is False:
            if new is not False:
                self.report(path, "now allowed where nothing was")
            return
        if new is True or new is False:
            if new is True:
                self.report(path, "now accepts anything")
            return
        outer = self.active
        if "$ref" in old or "$ref" in new:
            pair = (str(old.get("$ref")), str(new.get("$ref")))
            if pair in outer:
                return
            self.active = outer | {pair}
        try:
            old = _resolve(self.old_root, old)
            new = _resolve(self.new_root, new)
            old_branches, new_branches = _branches(old), _branches(new)
            if len(old_branches) > 1 or len(new_branches) > 1:
                self.compare_union(old_branches, new_branches, path)
            else:
                self.compare_single(old, new, path)
        finally:
            self.active = outer

    def compare_union(self, old_branches: list[Schema], new_branches: list[Schema], path: str) -> None:
        for new_branch in new_branches:
            new_types = _types(_resolve(self.new_root, new_branch))
            # Branches go to compare() unresolved, so a recursive $ref inside a union still ends.
            candidates = [branch for branch in old_branches if _types_fit(new_types, _types(_resolve(self.old_root, branch)))]
            if not candidates:
                self.report(path, f"now also allows {_describe(new_types)}")
                continue
            # Among several fitting old branches (a union of objects), one that fits cleanly wins.
            best: list[str] | None = None
            for candidate in candidates:
                trial = _Comparison(self.old_root, self.new_root)
                trial.active = self.active
                trial.compare(candidate, new_branch, path)
                if best is None or len(trial.problems) < len(best):
                    best = trial.problems
                if not best:
                    break
            self.problems.extend(best or [])

    def compare_single(self, old: Schema, new: Schema, path: str) -> None:
        old_types, new_types = _types(old), _types(new)
        if old_types is not None:
            if new_types is None:
                self.report(path, f"type {_fmt(old_types)} is no longer constrained")
            elif not _types_fit(new_types, old_types):
                self.report(path, f"type changed from {_fmt(old_types)} to {_fmt(new_types)}")
                return
        self.compare_values(old, new, path)
        for keyword in ("pattern", "format"):
            if keyword not in old or new.get(keyword) == old[keyword]:
                continue
            if keyword in new:
                self.report(path, f"{keyword} changed from {old[keyword]!r} to {new[keyword]!r}")
            else:
                self.report(path, f"{keyword} {old[keyword]!r} dropped")
        for keyword, larger_is_tighter in _BOUNDS:
            if keyword not in old:
                continue
            bound = old[keyword]
            if keyword not in new:
                self.report(path, f"{keyword} {bound} dropped")
            elif new[keyword] < bound if larger_is_tighter else new[keyword] > bound:
                self.report(path, f"{keyword} loosened from {bound} to {new[keyword]}")
        if "object" in (old_types or ()) or "properties" in old:
            self.compare_object(old, new, path)
        if "items" in old:
            self.compare(old["items"], new.get("items", True), f"{path}[]")

    def compare_values(self, old: Schema, new: Schema, path: str) -> None:
        old_values = _allowed_values(old)
        if old_values is None:
            return
        new_values = _allowed_values(new)
        if new_values is None:
            self.report(path, f"no longer limited to {_fmt_values(old_values)}")
            return
        added = [value for value in new_values if value not in old_values]
        if added:
            what = "const changed" if "const" in old else "enum gained"
            self.report(path, f"{what}: {_fmt_values(added)} unknown to consumers of {_fmt_values(old_values)}")

    def compare_object(self, old: Schema, new: Schema, path: str) -> None:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        prefix = f"{path}." if path else ""
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.report(f"{prefix}{name}", "property removed")
                continue
            if name in old_required and name not in new_required:
                self.report(f"{prefix}{name}", "no longer required (consumers expect it)")
            self.compare(old_prop, new_props[name], f"{prefix}{name}")
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        for name in sorted(new_props.keys() - old_props.keys()):
            if old_extra is False:
                self.report(
                    f"{prefix}{name}",
                    "property added; old consumers reject unknown properties (additionalProperties: false)",
                )
            elif isinstance(old_extra, dict):
                self.compare(old_extra, new_props[name], f"{prefix}{name}")
            if name in new_required:
                self.report(f"{prefix}{name}", "property added as required; events already on the topics lack it (add it optional)")
        if old_extra is False and new_extra is not False:
            self.report(path, "accepts unknown properties now; old consumers reject them (additionalProperties: false)")
        elif isinstance(old_extra, dict):
            self.compare(old_extra, new_extra, f"{prefix}(additional properties)")


def _resolve(root: Schema, node: Schema) -> Schema:
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            raise ValueError(f"cannot resolve $ref {ref!r}: only local, acyclic references are supported")
        seen.add(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        # Keywords beside $ref (2020-12 allows them) still apply, e.g. a description.
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        node = {**target, **siblings}
    return node


def _branches(node: Schema) -> list[Schema]:
    for keyword in ("anyOf", "oneOf"):
        if keyword in node:
            return list(node[keyword])
    return [node]


def _types(node: Schema) -> frozenset[str] | None:
    if "type" in node:
        declared = node["type"]
        return frozenset([declared] if isinstance(declared, str) else declared)
    values = _allowed_values(node)
    if values is not None:
        return frozenset(_json_type(value) for value in values)
    return None


def _types_fit(new: frozenset[str] | None, old: frozenset[str] | None) -> bool:
    if old is None:
        return True
    if new is None:
        return False
    widened = {"integer"} if "number" in old else set()
    return new <= old | widened


def _allowed_values(node: Schema) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    if "enum" in node:
        return list(node["enum"])
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _describe(types: frozenset[str] | None) -> str:
    return f"type {_fmt(types)}" if types is not None else "any value"


def _fmt(types: frozenset[str]) -> str:
    return "|".join(sorted(types))


def _fmt_values(values: list[Any]) -> str:
    return ", ".join(json.dumps(value) for value in values)


def compare_directory(directory: Path) -> list[str]:
    """Breaking changes of the current models against the schemas committed in DIR."""
    current = all_schemas()
    problems: list[str] = []
    for path in sorted(directory.glob("*.json")):
        event_type = path.name.removesuffix(".json")
        if path.name not in current:
            problems.append(f"{event_type}: event type removed")
            continue
        old = json.loads(path.read_text(encoding="utf-8"))
        problems.extend(f"{event_type}: {problem}" for problem in breaking_changes(old, current[path.name]))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_events.compat",
        description="Exit 1 if the current event models would break consumers of the schemas in DIR.",
    )
    parser.add_argument("--against", metavar="DIR", type=Path, required=True, help="the baseline schemas")
    args = parser.parse_args(argv)
    if not args.against.is_dir():
        print(f"no such directory: {args.against}")
        return 2
    problems = compare_directory(args.against)
    failed = f"{len(problems)} breaking change(s): publish the change as a new event type (.v2) instead"
    return report(problems, failed=failed, passed=f"no breaking changes against {args.against}")


if __name__ == "__main__":
    sys.exit(main())
