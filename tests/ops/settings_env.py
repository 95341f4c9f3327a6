"""The environment variables a service's Settings reads, for the deployment checks."""

from __future__ import annotations

import importlib

from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from billing_cli.platform import SERVICES
from billing_runtime.config import CommonSettings

PACKAGES = {spec.name: spec.package for spec in SERVICES}


def env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for field_name, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices if not isinstance(choice, AliasPath))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{info.alias or field_name}".upper())
    return names


def service_env_names(service: str) -> set[str]:
    """What the service named in docker-compose.yml / the Helm chart reads from its environment."""
    settings = importlib.import_module(f"{PACKAGES[service]}.config").Settings
    return env_names(settings)


# `billing migrate` and `billing topics` read these two (cli/src/billing_cli/main.py).
MIGRATE_ENV = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"} | env_names(CommonSettings)
