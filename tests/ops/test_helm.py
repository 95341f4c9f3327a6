"""deploy/helm/billing: lint and render the chart with Helm's own Go SDK (helm-python-sdk, no
helm binary needed), validate every manifest against the Kubernetes schemas, and check what an
operator relies on: per-service Deployment, Service and HPA, probes, resources, the migration
hook, configuration from values, and env variables the services really read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing_runtime.config import CommonSettings

from .settings_env import PACKAGES, env_names, service_env_names

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "billing"
KUBERNETES = "1.33"
DB = {"database": {"url": "postgresql://billing:secret@billing-db-rw.db.svc:5432/billing"}}


def values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _lookup(tree: dict[str, Any], path: list[str]) -> bool:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "billing" and chart["type"] == "application"
    assert set(values()["services"]) == set(PACKAGES)


def test_templates_reference_only_values_that_exist() -> None:
    """Without Helm: every `.Values.a.b` a template names is in values.yaml (optional keys
    used with `with` included), and every `$spec.x` is a key of each service."""
    tree = values()
    missing = []
    for template in (CHART / "templates").glob("*"):
        text = template.read_text()
        for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            path = match.group(1).strip(".").split(".")
            if not _lookup(tree, path):
                missing.append(f"{template.name}: .Values.{'.'.join(path)}")
        for match in re.finditer(r"\$spec((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            path = match.group(1).strip(".").split(".")
            missing += [f"{template.name}: services.{name}.{'.'.join(path)}" for name, spec in tree["services"].items() if not _lookup(spec, path)]
    assert not missing, missing


def test_env_in_values_is_read_by_the_services() -> None:
    tree = values()
    common = env_names(CommonSettings)
    problems = [f"env: {k}" for k in {**tree["env"], **tree["secretEnv"]} if k not in common]
    for name, spec in tree["services"].items():
        known = service_env_names(name)
        problems += [f"{name}: {k}" for k in {**spec["env"], **spec["secretEnv"]} if k not in known]
    assert not problems, problems


helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed: the chart is not rendered (static checks above still run)")


def render(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(overrides, name="prod", namespace="billing")
    docs = []
    for text in manifests.values():
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_lint_finds_no_problem() -> None:
    report = helm.lint(str(CHART))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 1 is INFO


def test_every_service_gets_a_deployment_service_and_autoscaler() -> None:
    docs = render(DB)
    deployments, services, hpas = by_kind(docs, "Deployment"), by_kind(docs, "Service"), by_kind(docs, "HorizontalPodAutoscaler")
    for name, package in PACKAGES.items():
        full = f"prod-billing-{name}"
        deployment = deployments[full]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert f"{package}.main:app" in container["command"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        assert services[full]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert hpas[full]["spec"]["scaleTargetRef"]["name"] == full
        assert hpas[full]["spec"]["maxReplicas"] >= hpas[full]["spec"]["minReplicas"]


def test_migrations_run_as_a_hook_before_install_and_upgrade() -> None:
    docs = render(DB)
    job = by_kind(docs, "Job")["prod-billing-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "billing migrate" in " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    # What the Job reads must exist before it: the config hooks have a lower weight.
    for kind in ("ConfigMap", "Secret"):
        config = by_kind(docs, kind)["prod-billing-env"]
        assert int(config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_configuration_comes_from_values() -> None:
    docs = render({**DB, "kafka": {"bootstrapServers": "my-cluster-kafka-bootstrap.kafka:9093"}, "otel": {"endpoint": "http://otel:4318"}})
    config = by_kind(docs, "ConfigMap")["prod-billing-env"]["data"]
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == "my-cluster-kafka-bootstrap.kafka:9093"
    assert config["KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
    secret = by_kind(docs, "Secret")["prod-billing-env"]["stringData"]
    assert secret["DATABASE_URL"] == DB["database"]["url"]
    assert "DATABASE_URL" not in config


def test_notify_fetches_documents_from_invoicing_and_links_are_public_when_asked() -> None:
    config = by_kind(render(DB), "ConfigMap")["prod-billing-env"]["data"]
    # The Service in front of invoicing, inside the cluster; links stay relative without a public URL.
    assert config["NOTIFY_DOCUMENTS_BASE_URL"] == "http://prod-billing-invoicing"
    assert "INVOICING_PUBLIC_BASE_URL" not in config
    public = by_kind(render({**DB, "publicBaseUrls": {"invoicing": "https://billing.example.com/invoicing"}}), "ConfigMap")["prod-billing-env"]["data"]
    assert public["INVOICING_PUBLIC_BASE_URL"] == "https://billing.example.com/invoicing"


def test_the_public_rate_limit_exemption_comes_from_values_with_the_settings_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """PUBLIC_RATE_LIMIT_EXEMPT (notify's addresses, spared invoicing's per-address limit on shared
    links): in values.yaml with the default the services have, rendered as the JSON they read."""
    default = CommonSettings.model_fields["public_rate_limit_exempt"].get_default(call_default_factory=True)
    assert values()["publicRateLimitExempt"] == default == []
    for given, expected in ((None, default), (["10.42.0.0/16"], ["10.42.0.0/16"])):
        overrides = DB if given is None else {**DB, "publicRateLimitExempt": given}
        config = by_kind(render(overrides), "ConfigMap")["prod-billing-env"]["data"]
        monkeypatch.setenv("PUBLIC_RATE_LIMIT_EXEMPT", config["PUBLIC_RATE_LIMIT_EXEMPT"])
        assert CommonSettings().public_rate_limit_exempt == expected
    # Given as invoicing's own env instead: that value, once (the ConfigMap is one mapping).
    services = values()["services"]
    as_env = {**DB, "services": {**services, "invoicing": {**services["invoicing"], "env": {"PUBLIC_RATE_LIMIT_EXEMPT": '["10.9.0.0/16"]'}}}}
    assert by_kind(render(as_env), "ConfigMap")["prod-billing-env"]["data"]["PUBLIC_RATE_LIMIT_EXEMPT"] == '["10.9.0.0/16"]'


def test_an_existing_database_secret_is_used_as_is() -> None:
    docs = render({"database": {"existingSecret": "billing-db-app", "existingSecretKey": "uri"}})
    assert "DATABASE_URL" not in (by_kind(docs, "Secret")["prod-billing-env"].get("stringData") or {})
    for deployment in by_kind(docs, "Deployment").values():
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "billing-db-app", "key": "uri"}


def test_no_database_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="database.url or database.existingSecret"):
        render({})


def test_dashboards_ship_as_configmaps() -> None:
    dashboards = [d for d in render(DB) if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == len(list((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))) == 6


def test_every_manifest_is_valid_kubernetes() -> None:
    import kubernetes_validate

    for doc in render({**DB, "serviceMonitor": {"enabled": False}}):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_alerts_ship_as_a_prometheus_rule_when_asked() -> None:
    assert not by_kind(render(DB), "PrometheusRule")
    rules = by_kind(render({**DB, "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}), "PrometheusRule")
    rule = rules["prod-billing-alerts"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "billing-alerts.yml").read_text())
