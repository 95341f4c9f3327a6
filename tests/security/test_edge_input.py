"""Bad input against the six real services: the classes of 500 the schemathesis probe of issue 12
found, each answered at the edge with a 422 problem+json whose stable `code` names what was wrong
and whose `field` says where, on every route; nothing is stored. Also the body limit (413) and
the pre-authentication limits (429) on the real routes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from billing_runtime.conventions import scope_matrix
from billing_runtime.testing import serve

if TYPE_CHECKING:  # the fixtures give them; conftest is not importable as a module
    from tests.security.conftest import Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROBLEM = "application/problem+json"


def concrete(path: str, value: str = "x1") -> str:
    """A route's path with every parameter filled in."""
    return re.sub(r"\{[^}]+\}", value, path)


def write_routes(platform: Platform) -> list[tuple[str, str, str]]:
    """(service, method, path) of every route that takes a body, on every service."""
    return [(name, m, concrete(p)) for name, app in platform.apps.items() for m, p, _ in scope_matrix(app) if m in ("POST", "PUT", "PATCH")]


def read_routes_with_parameters(platform: Platform) -> list[tuple[str, str]]:
    return [(name, p) for name, app in platform.apps.items() for m, p, _ in scope_matrix(app) if m == "GET" and "{" in p]


async def expect_422(r: httpx.Response, code: str, field: str, where: str) -> None:
    assert r.status_code == 422, f"{where}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"] == PROBLEM, where
    assert (r.json()["code"], r.json()["field"]) == (code, field), where


async def test_a_nul_in_any_path_is_422(platform: Platform) -> None:
    p = platform.partners[0]
    routes = read_routes_with_parameters(platform)
    assert len(routes) >= 20  # every service's reads by id
    for name, path in routes:
        client = platform.clients[name]
        target = concrete(path, "a%00b")
        r = await client.get(target, headers=p.headers("admin"))
        await expect_422(r, "nul_character", "path", f"{name} GET {target}")


async def test_a_nul_in_the_unauthenticated_shared_link_is_422(platform: Platform) -> None:
    r = await platform.clients["invoicing"].get("/v1/shared/%00")
    await expect_422(r, "nul_character", "path", "GET /v1/shared/%00")


async def test_a_nul_or_invalid_utf8_in_a_query_is_422(platform: Platform) -> None:
    p = platform.partners[0]
    for name, path in (("usage-ingest", "/v1/customers"), ("rating", "/v1/margins"), ("invoicing", "/v1/invoices"), ("payments", "/v1/payments")):
        r = await platform.clients[name].get(path, params={"period": "2026-1\x000", "after": "x"}, headers=p.headers("read"))
        await expect_422(r, "nul_character", "query.period", f"{name} {path}")
        r = await platform.clients[name].get(f"{path}?after=%ff%fe", headers=p.headers("read"))
        await expect_422(r, "invalid_unicode", "query", f"{name} {path}")


@pytest.mark.parametrize(
    ("raw", "code"),
    [('{"id": "x", "name": "a\\u0000b"}', "nul_character"), ('{"id": "x", "name": "\\udc80 lone"}', "invalid_unicode")],
    ids=["nul", "lone-surrogate"],
)
async def test_a_nul_or_lone_surrogate_in_any_body_is_422(platform: Platform, raw: str, code: str) -> None:
    p = platform.partners[0]
    routes = write_routes(platform)
    assert len(routes) >= 25
    for name, method, path in routes:
        headers = {**p.headers("admin"), "Content-Type": "application/json"}
        r = await platform.clients[name].request(method, path, content=raw.encode(), headers=headers)
        await expect_422(r, code, "name", f"{name} {method} {path}")


async def test_a_nul_deep_in_a_batch_names_the_record_and_stores_nothing(platform: Platform) -> None:
    p = platform.partners[1]
    ingest = platform.clients["usage-ingest"]
    good = f"{p.tenant}-c-{uuid.uuid4().hex[:6]}"
    body = {
        "records": [
            {"id": good, "name": "Fine Ltd", "billing_email": "ap@fine.example", "country": "IE", "currency": "EUR"},
            {"id": f"{good}-2", "name": "Bad\x00 Ltd", "billing_email": "ap@bad.example", "country": "IE", "currency": "EUR"},
        ]
    }
    r = await ingest.post("/v1/customers", json=body, headers={**p.headers(), "Idempotency-Key": f"nul-{good}"})
    await expect_422(r, "nul_character", "records.1.name", "POST /v1/customers")
    assert (await ingest.get(f"/v1/customers/{good}", headers=p.headers("read"))).status_code == 404
    # The key is not left in flight: the corrected batch goes through with it.
    body["records"] = body["records"][:1]
    r = await ingest.post("/v1/customers", json=body, headers={**p.headers(), "Idempotency-Key": f"nul-{good}"})
    assert r.status_code in (200, 201), r.text


async def test_a_lone_surrogate_in_a_payment_method_name_is_422_and_nothing_is_stored(platform: Platform) -> None:
    p = platform.partners[1]
    payments = platform.clients["payments"]
    raw = b'{"id": "pm-surrogate", "type": "card", "email": "ap@x.example", "name": "J\\ud800 Doe"}'
    r = await payments.post("/v1/accounts/acct-1/payment-methods", content=raw, headers={**p.headers(), "Content-Type": "application/json"})
    await expect_422(r, "invalid_unicode", "name", "payment method")
    listed = await payments.get("/v1/accounts/acct-1/payment-methods", headers=p.headers("read"))
    assert "pm-surrogate" not in listed.text


@pytest.mark.parametrize(
    ("quantity", "code"),
    [("NaN", "number_not_finite"), ("Infinity", "number_not_finite"), ("1e400", "number_out_of_range"), ("1" + "0" * 40, "number_out_of_range")],
)
async def test_non_finite_and_huge_usage_is_422_and_the_valid_record_is_not_stored(platform: Platform, quantity: str, code: str) -> None:
    p = platform.partners[2]
    ingest = platform.clients["usage-ingest"]
    valid = f"u-{uuid.uuid4().hex[:8]}"
    raw = (
        '{"records": ['
        f'{{"id": "{valid}", "customer_id": "c-1", "product_code": "AZ-VM", "quantity": 2.5, "timestamp": "2026-10-12T10:00:00Z"}},'
        f'{{"id": "{valid}-b", "customer_id": "c-1", "product_code": "AZ-VM", "quantity": {quantity}, "timestamp": "2026-10-12T10:00:00Z"}}'
        "]}"
    )
    headers = {**p.headers(), "Content-Type": "application/json", "Idempotency-Key": f"usage-{valid}"}
    r = await ingest.post("/v1/usage", content=raw.encode(), headers=headers)
    await expect_422(r, code, "records.1.quantity", f"usage quantity {quantity}")
    assert (await ingest.get(f"/v1/usage/{valid}", headers=p.headers("read"))).status_code == 404
    # Not left `idempotency_key_in_flight`: the same key with the corrected batch runs.
    fixed = raw.replace(f'"quantity": {quantity}', '"quantity": 1')
    assert (await ingest.post("/v1/usage", content=fixed.encode(), headers=headers)).status_code in (200, 201)


async def test_a_payment_amount_beyond_the_platforms_precision_is_422(platform: Platform) -> None:
    p = platform.partners[2]
    for amount, code in (("1" + "0" * 30, "number_out_of_range"), ("1e30", "number_out_of_range"), ("0.1234567890123456789012345678901", "number_too_precise")):
        raw = f'{{"id": "bt-{uuid.uuid4().hex[:6]}", "amount": {amount}, "currency": "EUR", "received_on": "2026-11-20"}}'
        r = await platform.clients["payments"].post("/v1/payments", content=raw.encode(), headers={**p.headers(), "Content-Type": "application/json"})
        await expect_422(r, code, "amount", f"amount {amount}")


async def test_a_body_over_the_limit_is_413_and_statements_may_be_larger(platform: Platform) -> None:
    p = platform.partners[0]
    huge = {"records": [{"id": "c", "name": "x" * 1_100_000}]}
    r = await platform.clients["usage-ingest"].post("/v1/customers", json=huge, headers=p.headers())
    assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (413, PROBLEM, "body_too_large")
    # Before the signature is looked at.
    r = await platform.clients["payments"].post(f"/v1/webhooks/stripe/{p.tenant}", content=b"{" + b" " * 1_100_000 + b"}")
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    # A 2 MB statement file is not refused for its size (it is no statement: 4xx from the parser).
    r = await platform.clients["payments"].post("/v1/bank-statements", content=b"x" * 2_000_000, headers={**p.headers(), "Content-Type": "text/plain"})
    assert r.status_code != 413 and r.status_code < 500, r.text[:300]


async def test_failed_keys_shared_links_and_webhooks_are_rate_limited_per_address(platform: Platform, build_service: Callable[..., FastAPI]) -> None:
    p = platform.partners[0]
    limits = {"auth_failure_rate_limit_per_second": 0.01, "auth_failure_rate_limit_burst": 3}
    limits |= {"public_rate_limit_per_second": 0.01, "public_rate_limit_burst": 3}
    async with serve(build_service("invoicing", **limits)) as client:
        bad = {"Authorization": "Bearer bk_live_k0000000000000000_" + "0" * 64}
        statuses = [(await client.get("/v1/invoices", headers=bad)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        r = await client.get("/v1/invoices", headers=p.headers("read"))  # the address, not the key, is blocked
        assert (r.status_code, r.json()["code"]) == (429, "auth_rate_limited") and int(r.headers["retry-after"]) >= 1
        links = [(await client.get(f"/v1/shared/unknown-{i}")).status_code for i in range(4)]
        assert links == [404, 404, 404, 429]
    async with serve(build_service("payments", **limits)) as client:
        shared = [(await client.post(f"/v1/webhooks/stripe/{p.tenant}", content=b"{}")).status_code for _ in range(4)]
        assert shared[-1] == 429 and 429 not in shared[:3]


async def test_dates_outside_1900_2200_and_unknown_currencies_are_422_on_every_service(platform: Platform) -> None:
    """Issue 12: `period=9999-12`, quarter `0000-Q1`, a timestamp of `9999-12-31T23:59:59-23:59`
    (beyond `datetime` once converted to UTC) and currency `ZZZ` were 500s or accepted; each is a
    422 naming the field, before the service's code runs, and nothing is stored."""
    p = platform.partners[1]
    far = "9999-12-31T23:59:59-23:59"
    usage_id = f"u-far-{uuid.uuid4().hex[:6]}"
    cases: list[tuple[str, str, str, dict[str, object], str, str]] = [
        ("invoicing", "GET", "/v1/invoices", {"params": {"period": "9999-12"}}, "date_out_of_range", "query.period"),
        ("invoicing", "GET", "/v1/tax/oss-report", {"params": {"quarter": "0000-Q1"}}, "date_out_of_range", "query.quarter"),
        ("invoicing", "GET", "/v1/comparison-reports", {"params": {"period": "0000-01"}}, "date_out_of_range", "query.period"),
        ("rating", "GET", "/v1/margins", {"params": {"period": "9999-12"}}, "date_out_of_range", "query.period"),
        ("rating", "POST", "/v1/bill-runs", {"json": {"period": "9999-12"}}, "date_out_of_range", "period"),
        ("rating", "GET", "/v1/accounts/acct-1/charges", {"params": {"period": "9999-12"}}, "date_out_of_range", "query.period"),
        (
            "usage-ingest",
            "POST",
            "/v1/usage",
            {"json": {"records": [{"id": usage_id, "customer_id": "c-1", "product_code": "AZ-VM", "quantity": "1", "timestamp": far}]}},
            "date_out_of_range",
            "records.0.timestamp",
        ),
        (
            "usage-ingest",
            "POST",
            "/v1/customers",
            {"json": {"records": [{"id": "c-zzz", "name": "Z", "billing_email": "a@z.example", "country": "IE", "currency": "ZZZ"}]}},
            "unknown_currency",
            "records.0.currency",
        ),
        (
            "payments",
            "POST",
            "/v1/payments",
            {"json": {"id": "bt-zzz", "amount": "10.00", "currency": "ZZZ", "received_on": "2026-11-20"}},
            "unknown_currency",
            "currency",
        ),
        (
            "payments",
            "POST",
            "/v1/payments",
            {"json": {"id": "bt-far", "amount": "10.00", "currency": "EUR", "received_on": "9999-12-31"}},
            "date_out_of_range",
            "received_on",
        ),
    ]
    for name, method, path, kwargs, code, field in cases:
        r = await platform.clients[name].request(method, path, headers=p.headers("admin"), **kwargs)  # type: ignore[arg-type]  # json= or params=, by case
        await expect_422(r, code, field, f"{name} {method} {path} {kwargs}")
    assert (await platform.clients["usage-ingest"].get(f"/v1/usage/{usage_id}", headers=p.headers("read"))).status_code == 404
    assert (await platform.clients["usage-ingest"].get("/v1/customers/c-zzz", headers=p.headers("read"))).status_code == 404


async def test_a_payment_method_with_a_nul_in_its_name_is_not_stored(platform: Platform) -> None:
    p = platform.partners[1]
    payments = platform.clients["payments"]
    body = {"id": "pm-nul", "type": "bank_transfer", "email": "ap@x.example", "name": "J\x00 Doe"}
    r = await payments.post("/v1/accounts/acct-nul/payment-methods", json=body, headers={**p.headers(), "Idempotency-Key": "pm-nul"})
    await expect_422(r, "nul_character", "name", "payment method")
    assert (await payments.get("/v1/accounts/acct-nul/payment-methods", headers=p.headers("read"))).json()["items"] == []
    # The key is free for the corrected request.
    body["name"] = "J Doe"
    r = await payments.post("/v1/accounts/acct-nul/payment-methods", json=body, headers={**p.headers(), "Idempotency-Key": "pm-nul"})
    assert r.status_code == 201, r.text
