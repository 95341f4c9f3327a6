"""docker-compose.yml: Apache Kafka in KRaft mode, PostgreSQL, the six services after a migrate
one-shot, Prometheus, Grafana, an OpenTelemetry collector, a mail catcher; every env variable is
one the service reads, every file it mounts exists."""

from __future__ import annotations

import base64
import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .settings_env import MIGRATE_ENV, PACKAGES, service_env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_stack_is_complete(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(PACKAGES) | {"postgres", "kafka", "migrate", "prometheus", "grafana", "otel-collector", "jaeger", "mailpit"} <= set(services)
    assert "name" not in compose  # docker-compose v1 refuses a top-level name
    assert not any("zookeeper" in name or "zookeeper" in str(s.get("image", "")) for name, s in services.items())


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"


def test_services_start_after_migrations_on_real_kafka(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert "billing migrate" in " ".join(migrate["command"])
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name, package in PACKAGES.items():
        service = services[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert str(service["environment"]["KAFKA_ENABLE_IDEMPOTENCE"]).lower() == "true", name
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        command = service["command"]
        assert f"{package}.main:app" in command, name
        assert callable(importlib.import_module(f"{package}.main").app)  # the factory uvicorn is told to call
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_every_env_variable_is_read_by_its_service(compose: dict[str, Any]) -> None:
    problems = []
    for name in PACKAGES:
        known = service_env_names(name)
        problems += [f"{name}: {var}" for var in compose["services"][name]["environment"] if var.upper() not in known]
    problems += [f"migrate: {var}" for var in compose["services"]["migrate"]["environment"] if var not in MIGRATE_ENV]
    assert not problems, "variables no Settings reads:\n" + "\n".join(problems)


def test_invoicing_names_the_addresses_its_public_limit_spares(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """PUBLIC_RATE_LIMIT_EXEMPT is set on invoicing (where notify fetches the PDFs it attaches), with
    the services' default, as the JSON they read."""
    from billing_runtime.config import CommonSettings

    given = compose["services"]["invoicing"]["environment"]["PUBLIC_RATE_LIMIT_EXEMPT"]
    monkeypatch.setenv("PUBLIC_RATE_LIMIT_EXEMPT", given)
    default = CommonSettings.model_fields["public_rate_limit_exempt"].get_default(call_default_factory=True)
    assert CommonSettings().public_rate_limit_exempt == default == []


def test_every_referenced_file_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")) and not (ROOT / source).exists():
                missing.append(f"{name}: {source}")
        build = service.get("build")
        if build:
            if not (ROOT / build["context"] / build["dockerfile"]).is_file():
                missing.append(f"{name}: {build['dockerfile']}")
    assert not missing, missing


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    for name in PACKAGES:
        assert f"{name}:8000" in targets, name
        assert "8000" in compose["services"][name]["command"]
    assert "otel-collector:8888" in targets


def test_grafana_is_provisioned_with_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards/billing"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/billing.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/billing"
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"


def compose_tools() -> list[list[str]]:
    """Every compose implementation on this machine: the v2 plugin, and v1 (`make tools` installs Debian's)."""
    tools = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        tools.append([docker, "compose"])
    if shutil.which("docker-compose"):
        tools.append(["docker-compose"])
    return tools


def test_docker_compose_config_accepts_the_file() -> None:
    tools = compose_tools()
    if not tools:
        pytest.fail("neither `docker compose` nor `docker-compose` is installed: `make tools` installs Debian's docker-compose")
    # The services seal secrets with keys the operator gives (deploy/README): without them compose
    # refuses to start anything and says which variable to set.
    keys = {**os.environ, "SECRETS_KEYS": '{"k1": "' + base64.b64encode(bytes(32)).decode() + '"}'}
    unset = {k: v for k, v in os.environ.items() if k != "SECRETS_KEYS"}
    for tool in tools:
        result = subprocess.run([*tool, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, cwd=ROOT, env=keys)
        assert result.returncode == 0, (tool, result.stderr)
        refused = subprocess.run([*tool, "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, cwd=ROOT, env=unset)
        assert refused.returncode != 0 and "SECRETS_KEYS" in refused.stderr, (tool, refused.stderr)


def test_traces_go_to_jaeger_and_grafana_reads_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector" / "config.yaml").read_text())
    exporters = collector["service"]["pipelines"]["traces"]["exporters"]
    assert [collector["exporters"][e]["endpoint"] for e in exporters] == ["jaeger:4317"]
    assert services["grafana"]["environment"]["JAEGER_URL"] == "http://jaeger:16686"
    (jaeger,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/jaeger.yaml").read_text())["datasources"]
    assert jaeger["type"] == "jaeger" and jaeger["url"] == "${JAEGER_URL}"


def test_the_dockerfile_builds_every_service_from_sources_that_exist() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert stages == ["build", "runtime"]
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
    installed = set(re.findall(r"\./((?:libs|services)/[\w-]+|cli)\b", text))
    assert {f"services/{name}" for name in PACKAGES} | {"libs/billing-events", "libs/billing-runtime", "cli"} <= installed
    assert "USER 10001" in text and "EXPOSE 8000" in text
    # The BuildKit ignore file beside the Dockerfile keeps the virtualenv and state out of the context.
    assert ".venv" in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
