import json
import subprocess
import sys
from pathlib import Path

import pytest

from billing_events import schemas
from billing_events.registry import EVENT_MODELS

TYPES = sorted(model.event_type for model in EVENT_MODELS)


def test_write_produces_one_canonical_file_per_type(tmp_path: Path) -> None:
    assert schemas.main(["--write", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{t}.json" for t in TYPES]
    for path in tmp_path.iterdir():
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    schemas.write(tmp_path / "a")
    schemas.write(tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


def test_event_schema_pins_type_and_describes_the_envelope() -> None:
    schema = schemas.all_schemas()["billing.invoice.issued.v1.json"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"]["const"] == "billing.invoice.issued.v1"
    assert schema["properties"]["specversion"]["const"] == "1.0"
    assert set(schema["properties"]) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "tenant",
        "traceparent",
        "data",
    }
    assert schema["properties"]["data"]["$ref"] == "#/$defs/InvoiceIssued"
    assert schema["additionalProperties"] is False


def test_data_schema_stands_alone() -> None:
    from billing_events.events.invoicing import InvoiceIssued

    schema = schemas.data_schema(InvoiceIssued)
    assert schema["title"] == "InvoiceIssued"
    assert "Money" in schema["$defs"] and "InvoiceLine" in schema["$defs"]
    assert "specversion" not in schema["properties"]


def test_check_reports_differing_missing_and_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schemas.write(tmp_path)
    (tmp_path / "released").mkdir()
    (tmp_path / "released" / "billing.old.thing.v1.json").write_text("{}\n")
    assert schemas.main(["--check", str(tmp_path)]) == 0

    (tmp_path / "billing.invoice.issued.v1.json").write_text("{}\n")
    (tmp_path / "billing.payment.failed.v1.json").unlink()
    (tmp_path / "billing.invoice.voided.v1.json").write_text("{}\n")
    capsys.readouterr()
    assert schemas.main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "differs: " in out and "billing.invoice.issued.v1.json" in out
    assert "missing: " in out and "billing.payment.failed.v1.json" in out
    assert "stale (no such event type): " in out and "billing.invoice.voided.v1.json" in out
    assert "python -m billing_events.schemas --write" in out


def test_write_removes_stale_files_but_not_subfolders(tmp_path: Path) -> None:
    (tmp_path / "released").mkdir()
    (tmp_path / "released" / "keep.json").write_text("{}\n")
    (tmp_path / "billing.invoice.voided.v1.json").write_text("{}\n")
    schemas.write(tmp_path)
    assert not (tmp_path / "billing.invoice.voided.v1.json").exists()
    assert (tmp_path / "released" / "keep.json").exists()
    assert schemas.check(tmp_path) == []


def test_module_runs_as_a_command(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "billing_events.schemas", "--check", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert run.stdout.count("missing: ") == len(TYPES)
