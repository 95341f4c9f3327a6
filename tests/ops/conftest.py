from __future__ import annotations

import pytest

from billing_cli.platform import SERVICES
from billing_runtime.migrations import migrations_dir, upgrade


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    """The test database with every service's schema at head."""
    for spec in SERVICES:
        upgrade(migrations_dir(spec.package), database_url)
    return database_url
