from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import service_under_test
from invoicing.config import Settings
from invoicing.db import metadata

# Tests run in importlib mode (no sys.path change); the shared helpers module sits beside this file
# under a name no other service's tests use.
sys.path.insert(0, str(Path(__file__).parent))

from invoicing_testkit import INVOICE_DATE  # noqa: E402

# The harness's `migrated`, `settings`, `app` and `client` (billing_runtime.testing) follow from it.
# Rendering ahead is off but in its own test: it would render every invoice the session's tests
# issue (they share one database and one fixed instant).
service = service_under_test("invoicing", clock_fixed_at=INVOICE_DATE, render_ahead=False)


@pytest.fixture
def tenant() -> str:
    return f"seller-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def runtime(migrated: str) -> AsyncIterator[ServiceRuntime[Settings]]:
    """The service's runtime without servers, for calling service functions directly."""
    rt = ServiceRuntime("invoicing", Settings(database_url=migrated, clock_fixed_at=INVOICE_DATE), metadata)
    yield rt
    await rt.engine.dispose()


_VALIDATED: set[tuple[str, str, str]] = set()


@pytest.fixture(scope="module", autouse=True)
def every_document_passes_en16931(migrated: str) -> Iterator[None]:
    """After each module: every invoice and credit note it left in the database, and every
    e-invoice stored, pass the official EN 16931 rules (CII and UBL) with no error and no warning."""
    import asyncio

    from en16931 import documents_in_database, problems_in_database

    _VALIDATED.update(asyncio.run(documents_in_database(migrated)))  # another module's, or another suite's
    yield
    problems = asyncio.run(problems_in_database(migrated, _VALIDATED))
    assert not problems, "documents failing the EN 16931 rules:\n" + "\n".join(problems[:40])
