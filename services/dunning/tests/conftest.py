from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from billing_runtime.testing import service_under_test

# Tests run in importlib mode (no sys.path change); the shared helpers module sits beside this file
# under a name no other service's tests use.
sys.path.insert(0, str(Path(__file__).parent))

# Ten days after the worked example's due date (2026-12-05).
TODAY = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)

# The harness's `migrated`, `settings`, `app` and `client` (billing_runtime.testing) follow from it.
service = service_under_test("dunning", clock_fixed_at=TODAY)
