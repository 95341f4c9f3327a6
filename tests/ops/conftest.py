from __future__ import annotations

import pytest

from billing_cli.platform import SERVICES
from billing_runtime.testing import migrate


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    """The test database with every service's schema at head (the session's copy of the template
    has them already: `migrate` runs Alembic only for what it lacks)."""
    return migrate(database_url, *(spec.package for spec in SERVICES))
