"""pytest fixtures for suites that talk to the sandboxes: `stripe_sandbox` and `gocardless_sandbox`,
each a fresh sandbox served on a free port of this machine for one test module (its state, the
customers and payments it was sent, starts empty with the module).

Loaded automatically (a pytest11 entry point) wherever provider-sandboxes is installed, as
billing_runtime's harness is; a module may override either fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provider_sandboxes import GoCardlessSandbox, SandboxServer, StripeSandbox, running


@pytest.fixture(scope="module")
def stripe_sandbox() -> Iterator[SandboxServer]:
    with running(StripeSandbox().app()) as server:
        yield server


@pytest.fixture(scope="module")
def gocardless_sandbox() -> Iterator[SandboxServer]:
    with running(GoCardlessSandbox().app()) as server:
        yield server
