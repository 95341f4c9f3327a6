"""Schemathesis against every service's OpenAPI document (issue 12): each service runs under uvicorn
(its real lifespan: migrations applied, key table loaded, consumers and relay started), and every
operation is called with generated valid and invalid input, with an admin key and without a key.
Every answer must be no 5xx, a status the operation declares, the content type it declares, and a
body that matches the declared schema (problem+json for every refusal: the app factory declares
401/403/404/409/413/422/429 on every route).

Bounded for CI: `FUZZ_EXAMPLES` cases per operation with the key and `FUZZ_EXAMPLES_NO_KEY`
without (derandomized, so CI runs the same cases every time; no shrinking). The counts of each run
(operations, cases, failures) are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyFailure
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.result import Err

from billing_runtime.auth import issue
from billing_runtime.db import create_engine
from billing_runtime.embedded import free_port

# The services run on the fixed clock of conftest (2026-11-21 09:00 UTC).
ISSUED_AT = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
SERVICES = ["usage-ingest", "rating", "invoicing", "payments", "dunning", "notify", "portal"]
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
FUZZ_EXAMPLES_NO_KEY = int(os.environ.get("FUZZ_EXAMPLES_NO_KEY", "2"))


@schemathesis.check
def no_5xx_but_a_declared_provider_outage(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """`not_a_server_error`, except a 503 `provider_unavailable` a route declares: the platform's
    answer when a payment provider did not answer (no provider runs for this test), not a bug."""
    if response.status_code == 503 and "503" in case.operation.definition.raw.get("responses", {}):
        assert response.json().get("code") == "provider_unavailable", response.text
        return True
    return not_a_server_error(ctx, response, case)


CHECKS = [no_5xx_but_a_declared_provider_outage, status_code_conformance, content_type_conformance, response_schema_conformance]
# Fuzzing is many requests from one address with one key: the limits are not what is tested here.
UNLIMITED = {
    "rate_limit_per_second": 100_000.0,
    "rate_limit_burst": 100_000,
    "public_rate_limit_per_second": 100_000.0,
    "public_rate_limit_burst": 100_000,
    "auth_failure_rate_limit_per_second": 100_000.0,
    "auth_failure_rate_limit_burst": 100_000,
}


@dataclass
class Tally:
    operations: int = 0
    cases: int = 0
    generation_errors: int = 0
    failures: list[str] = field(default_factory=list)


class Served:
    """A service app under uvicorn in a thread of its own (its own event loop)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=f"fuzz-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start under uvicorn")
            time.sleep(0.05)
        # Ready: its consumer has its partitions (what `serve` waits for in-process).
        while requests.get(f"{self.base_url}/readyz", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the service never became ready")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def fuzz_key(migrated: str, kafka_bootstrap: str) -> str:
    """An admin key of a tenant of its own, in the key table before the services start."""

    async def issued() -> str:
        engine = create_engine(migrated, pool_size=1)
        try:
            key = await issue(engine, kafka_bootstrap, f"fuzz-{uuid.uuid4().hex[:8]}", "admin", label="schemathesis", now=ISSUED_AT)
            return key.key
        finally:
            await engine.dispose()

    return asyncio.run(issued())


def fuzz(schema: schemathesis.BaseSchema, base_url: str, key: str) -> Tally:
    tally = Tally()
    session = requests.Session()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        if not operation.path.startswith("/v1/"):
            continue  # /healthz and /readyz are the orchestrator's, not the API
        tally.operations += 1
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)
        for with_key, examples in ((True, FUZZ_EXAMPLES), (False, FUZZ_EXAMPLES_NO_KEY)):
            found = _fuzz_operation(tally, session, operation.label, strategy, examples, base_url, key if with_key else None)
            tally.failures.extend(found[:2])  # the first two of an operation say enough
    return tally


def _fuzz_operation(tally: Tally, session: requests.Session, label: str, strategy: Any, examples: int, base_url: str, key: str | None) -> list[str]:
    found: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        tally.cases += 1
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-api-key")}
        case.headers = CaseInsensitiveDict(headers)
        if key is not None:
            headers = {**headers, "Authorization": f"Bearer {key}"}
        try:
            case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # a failed check: recorded, the run goes on to the other operations
            found.append(f"{label} ({'key' if key else 'no key'}): {str(exc)[:1500]}")

    try:
        run()
    except FlakyFailure as exc:
        # Raised while *generating* a case (schemathesis' negative bodies draw from `random`), not
        # by a check: every call's failure is caught above. Counted, not hidden.
        tally.generation_errors += 1
        print(f"schemathesis could not generate a case for {label}: {exc}")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_fuzz(service: str, build_service: Callable[..., FastAPI], fuzz_key: str, capsys: pytest.CaptureFixture[str]) -> None:
    # No provider runs here: a payment method's provider call is refused at once (503
    # `provider_unavailable`, declared) instead of going out to the internet.
    providers = {"stripe_api_base": "http://127.0.0.1:9", "gocardless_base_url": "http://127.0.0.1:9"} if service == "payments" else {}
    app = build_service(service, **UNLIMITED, **providers)
    schema = schemathesis.openapi.from_dict(app.openapi())
    started = time.monotonic()
    with Served(app) as served:
        tally = fuzz(schema, served.base_url, fuzz_key)
    with capsys.disabled():
        elapsed = time.monotonic() - started
        print(
            f"\nschemathesis {service}: {tally.operations} operations, {tally.cases} cases, {len(tally.failures)} failures, "
            f"{tally.generation_errors} generation errors, {elapsed:.0f} s"
        )
    assert tally.operations > 0
    assert not tally.failures, "\n\n".join(tally.failures)
