import json
import subprocess
import sys
from pathlib import Path

import pytest

from billing_events import compat, schemas


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    schemas.write(tmp_path)
    return tmp_path


def test_current_models_are_compatible_with_themselves(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compat.main(["--against", str(baseline)]) == 0
    assert "no breaking changes" in capsys.readouterr().out


def test_a_removed_event_type_is_breaking(baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (baseline / "billing.invoice.voided.v1.json").write_text("{}\n")
    assert compat.main(["--against", str(baseline)]) == 1
    assert "billing.invoice.voided.v1: event type removed" in capsys.readouterr().out


def test_a_field_the_baseline_had_and_the_model_lacks_is_breaking(baseline: Path) -> None:
    path = baseline / "billing.invoice.issued.v1.json"
    old = json.loads(path.read_text())
    old["$defs"]["InvoiceLine"]["properties"]["discount"] = {"$ref": "#/$defs/Money"}
    old["$defs"]["InvoiceLine"]["required"].append("discount")
    path.write_text(json.dumps(old))
    problems = compat.compare_directory(baseline)
    assert problems
    assert all(p.startswith("billing.invoice.issued.v1: data.lines[].discount: property removed") for p in problems)


def test_an_optional_field_added_to_event_data_is_not_breaking_a_required_one_is() -> None:
    old = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    optional = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}
    required = {**optional, "required": ["a", "b"]}
    assert compat.breaking_changes(old, optional) == []
    assert compat.breaking_changes(old, required) == ["b: property added as required; events already on the topics lack it (add it optional)"]
    closed = {**old, "additionalProperties": False}
    assert compat.breaking_changes(closed, optional)[0].startswith("b: property added; old consumers reject")


def test_a_new_event_type_is_not_breaking(baseline: Path) -> None:
    (baseline / "billing.invoice.issued.v1.json").unlink()
    assert compat.compare_directory(baseline) == []


def test_module_runs_as_a_command(baseline: Path) -> None:
    (baseline / "billing.invoice.voided.v1.json").write_text("{}\n")
    run = subprocess.run(
        [sys.executable, "-m", "billing_events.compat", "--against", str(baseline)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "event type removed" in run.stdout and ".v2" in run.stdout


def test_a_missing_baseline_directory_is_an_error(tmp_path: Path) -> None:
    assert compat.main(["--against", str(tmp_path / "nope")]) == 2
