"""deploy/prometheus/rules: the alerts are valid (`promtool check rules`), each fires and stays
quiet as its unit tests say (`promtool test rules`, Debian's prometheus package: `make tools`),
each has a runbook section in deploy/README.md, and compose loads them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "billing-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "billing-alerts.test.yml"
README = ROOT / "deploy" / "README.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make tools` installs Debian's prometheus package")
    return found


def alerts() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_as_its_tests_say() -> None:
    result = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", RULE_TESTS.read_text()))
    assert {str(rule["alert"]) for rule in alerts()} == tested


def test_every_alert_has_a_runbook_section() -> None:
    anchors = {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in re.findall(r"^#+ (.+)$", README.read_text(), re.MULTILINE)}
    for rule in alerts():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        runbook = str(annotations["runbook"])
        assert runbook.startswith("deploy/README.md#"), rule["alert"]
        assert runbook.split("#", 1)[1] in anchors, (rule["alert"], runbook)
        assert rule["labels"]["severity"] in {"warning", "critical"}  # type: ignore[index]  # a rule as YAML loads it


def test_compose_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in compose["services"]["prometheus"]["volumes"]
