"""The cross-tenant matrix: three partners, every endpoint of every service (read from each app's
OpenAPI, so a new endpoint is covered without touching this file), each partner's key against the
others' objects. Reads of another partner's object are 403/404; no response carries another
partner's data; writes aimed at another partner's objects, with injected tenant and amount fields
in the body and a spoofed X-Tenant-Id, land in the caller's own tenant or nowhere."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from aiokafka import AIOKafkaProducer

from billing_events import PeriodClosed, account_id, new_event, subscription_id, to_kafka
from billing_runtime.testing import eventually

if TYPE_CHECKING:  # the fixtures give them; conftest is not importable as a module
    from tests.security.conftest import Partner, Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = TypeVar("T")
PERIOD = "2026-10"

HEALTH = {("GET", "/healthz"), ("GET", "/readyz")}
# Endpoints anyone may call without a key (reference data, the same for everyone); the matrix still
# checks them for leaks. Any other endpoint without the API-key security scheme fails the matrix.
PUBLIC = {("rating", "GET", "/v1/categories")}
# Payment providers call these; the provider's signature, checked with the tenant's secret, is the auth.
SIGNED_WEBHOOK = re.compile(r"^/v1/webhooks/")
# Capability links (invoicing's shared documents): the unguessable token in the path is the credential.
SHARED = re.compile(r"^/v1/shared/")
INJECTED = {"tenant": None, "tenant_id": None, "partner_id": None, "seller_id": None, "amount": "0.00", "total": "0.00"}


# Objects the services create from a partner's month (its invoice, bill run, ...), found by `bill`.
BILLED: dict[str, dict[str, str]] = {}


def ids(p: Partner) -> dict[str, str]:
    """The partner's own objects, by the path parameter names the services use."""
    t = p.tenant
    return {
        "customer_id": f"{t}-cust",
        "order_id": f"{t}-ord",
        "record_id": f"{t}-use",
        "code": f"{t}-PRD",
        "product_code": f"{t}-PRD",
        "account_id": account_id(t, f"{t}-cust"),
        "subscription_id": subscription_id(t, f"{t}-ord"),
        **BILLED.get(t, {}),
    }


def bodies(p: Partner) -> dict[tuple[str, str, str], Any]:
    """A valid body per write endpoint that has one here; others get `{}` (and must refuse it)."""
    i, t, m = ids(p), p.tenant, p.marker
    record = {"customer_id": i["customer_id"], "product_code": i["code"]}
    return {
        ("usage-ingest", "POST", "/v1/customers"): {
            "records": [{"id": i["customer_id"], "name": m, "billing_email": f"billing@{t}.example", "country": "IE", "currency": "EUR", "vat_id": None}]
        },
        ("usage-ingest", "POST", "/v1/orders"): {"records": [{"id": i["order_id"], **record, "quantity": "3", "start_date": "2026-10-01"}]},
        ("usage-ingest", "POST", "/v1/usage"): {"records": [{"id": i["record_id"], **record, "quantity": "1.5", "timestamp": "2026-10-03T10:00:00Z"}]},
        ("usage-ingest", "POST", "/v1/quantities"): {
            "records": [{"id": f"{t}-qty", **record, "observed_at": "2026-10-04T10:00:00Z", "source": m, "quantity": "3"}]
        },
        ("rating", "PUT", "/v1/products/{code}"): {
            "name": m,
            "unit_price": "10.00",
            "currency": "EUR",
            "description": m,
            "category": None,
            "quantity_rule": "contracted",
        },
        ("invoicing", "PUT", "/v1/seller"): {
            "name": m,
            "country": "IE",
            "vat_id": None,
            "invoice_prefix": "SEC",
            "due_rule": {"net_days": 14},
            "email": f"ar@{t}.example",
        },
        ("notify", "PUT", "/v1/brand"): {"sender_name": m, "sender_email": f"billing@{t}.example", "logo_url": None, "primary_color": "#0B5394", "footer": m},
        ("dunning", "PUT", "/v1/dunning-policy"): {"steps": [{"days_after_due": policy_days(p), "action": "remind"}]},
    }


def policy_days(p: Partner) -> int:
    """The dunning policy has no free text for a marker: each partner's first step is its own day."""
    return 11 + sum(p.tenant.encode()) % 300


def own(p: Partner, service: str, path: str) -> str:
    """What the partner's own object shows of the partner (its marker, or its policy day)."""
    return f'"days_after_due":{policy_days(p)}' if (service, path) == ("dunning", "/v1/dunning-policy") else p.marker


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    public: bool = False

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    def fill(self, values: dict[str, str]) -> str:
        # An id nobody owns for parameters without a seeded object: the route is still exercised.
        return re.sub(r"{([^}]+)}", lambda m: values.get(m.group(1), str(uuid.uuid4())), self.path)


def routes(platform: Platform) -> list[Route]:
    found = []
    for service, app in platform.apps.items():
        for path, operations in app.openapi()["paths"].items():
            for method, operation in operations.items():
                if (method.upper(), path) in HEALTH:
                    continue
                public = (service, method.upper(), path) in PUBLIC or bool(SIGNED_WEBHOOK.match(path) or SHARED.match(path))
                assert public or operation.get("security"), f"{service} {method.upper()} {path} is callable without an API key"
                found.append(Route(service, method.upper(), path, public))
    return found


def inject(body: Any, victim: Partner) -> Any:
    """The body with the victim's tenant (and zero amounts) pushed into every object in it."""
    if isinstance(body, dict):
        injected = {k: inject(v, victim) for k, v in body.items()}
        injected.update({k: v if v is not None else victim.tenant for k, v in INJECTED.items() if k not in body})
        return injected
    if isinstance(body, list):
        return [inject(v, victim) for v in body]
    return body


def leaks(text: str, me: Partner, partners: list[Partner]) -> list[str]:
    """Other partners whose data is in `text`: only their objects carry their marker (ids and error
    messages may echo the tenant the caller itself named)."""
    return [p.tenant for p in partners if p is not me and p.marker in text]


async def seed(platform: Platform, p: Partner) -> None:
    for (service, method, template), body in bodies(p).items():
        route = next((r for r in routes(platform) if (r.service, r.method, r.path) == (service, method, template)), None)
        if route is None:
            continue  # the service that had it is not there any more; the matrix covers what is
        # admin: some seeded routes (providers, webhook endpoints, the dunning policy) need it.
        r = await platform.clients[route.service].request(method, route.fill(ids(p)), json=body, headers=p.headers("admin"))
        assert r.status_code in (200, 201), f"seeding {route}: {r.status_code} {r.text[:300]}"


def closed_period(p: Partner) -> PeriodClosed:
    """October closed for the partner's customer, as rating would emit it (this test needs an invoice
    per partner, not rating's rules)."""
    i = ids(p)
    line = {
        "line_id": str(uuid.uuid4()),
        "product_code": i["code"],
        "description": f"Support, {p.marker}",
        "category": None,
        "service_period_start": "2026-10-01",
        "service_period_end": "2026-10-31",
        "quantity": "3",
        "unit_price": {"amount": "10.00", "currency": "EUR"},
        "amount": {"amount": "30.00", "currency": "EUR"},
        "quantity_rule": "contracted",
        "end_customer_id": None,
    }
    return PeriodClosed.model_validate(
        {
            "bill_run_id": str(uuid.uuid4()),
            "seller_id": p.tenant,
            "buyer_account_id": i["account_id"],
            "period_start": "2026-10-01",
            "period_end": "2026-10-31",
            "currency": "EUR",
            "lines": [line],
        }
    )


async def bill(platform: Platform, p: Partner) -> None:
    """Close October for the partner and wait for its invoice, so that the invoice, payment and
    delivery endpoints have a real object of the partner's to be attacked."""
    c, h = platform.clients, p.headers()
    closed = closed_period(p)
    message = to_kafka(new_event(closed, source="/services/rating", tenant=p.tenant, subject=closed.buyer_account_id))
    producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(message.topic, message.value, key=message.key, headers=message.headers)
    finally:
        await producer.stop()

    async def invoiced() -> str | None:
        items = (await c["invoicing"].get("/v1/invoices", params={"period": PERIOD}, headers=h)).json()["items"]
        return str(items[0]["id"]) if items else None

    billed = {"invoice_id": await eventually(invoiced, f"{p.tenant}'s invoice", timeout=90)}

    async def known_to_payments() -> bool:
        return (await c["payments"].get(f"/v1/invoices/{billed['invoice_id']}", headers=h)).status_code == 200

    await eventually(known_to_payments, "payments to learn the invoice", timeout=90)

    async def delivered() -> str | None:
        items = (await c["notify"].get("/v1/deliveries", headers=h)).json()["items"]
        return str(items[0]["delivery_id"]) if items else None

    billed["delivery_id"] = await eventually(delivered, f"a delivery to {p.tenant}'s customer", timeout=90)
    BILLED[p.tenant] = billed


async def test_every_endpoint_needs_a_key(platform: Platform) -> None:
    for route in [r for r in routes(platform) if not r.public]:
        r = await platform.clients[route.service].request(route.method, route.fill({}), json={})
        assert (r.status_code, r.json()["code"]) == (401, "api_key_required"), route
        r = await platform.clients[route.service].request(route.method, route.fill({}), json={}, headers={"X-Tenant-Id": platform.partners[0].tenant})
        assert r.status_code == 401, route


async def test_cross_tenant_matrix(platform: Platform) -> None:
    partners = platform.partners
    for p in partners:
        await seed(platform, p)
    for p in partners:
        await bill(platform, p)
    all_routes = routes(platform)
    report: dict[tuple[str, str, str], set[int]] = {}

    async def attack(route: Route, attacker: Partner, victim: Partner, body: Any) -> None:
        headers = {**attacker.headers("admin"), "X-Tenant-Id": victim.tenant}
        client = platform.clients[route.service]
        r = await client.request(route.method, route.fill(ids(victim)), json=body, params={"tenant": victim.tenant}, headers=headers)
        report.setdefault((route.service, route.method, route.path), set()).add(r.status_code)
        assert r.status_code < 500, f"{route} by {attacker.tenant} → {r.status_code}: {r.text[:300]}"
        assert not leaks(r.text, attacker, partners), f"{route} by {attacker.tenant} leaked {leaks(r.text, attacker, partners)}: {r.text[:300]}"
        # A read naming an object the victim owns (every path parameter one of its seeded ids).
        if route.method == "GET" and route.params and all(name in ids(victim) for name in route.params) and r.status_code not in (403, 404):
            # Otherwise the answer must be the one for an object nobody has (say, an empty page):
            # then it tells the caller nothing about the victim's object.
            nobody = {name: f"nobody-{uuid.uuid4().hex[:8]}" for name in route.params}
            blank = await client.get(route.fill(nobody), headers=headers)
            normalised = r.text
            for name in route.params:
                normalised = normalised.replace(ids(victim)[name], nobody[name])
            assert (r.status_code, normalised) == (blank.status_code, blank.text), (
                f"{route} by {attacker.tenant} on {victim.tenant}'s object → {r.status_code}: {r.text[:300]}"
            )

    pairs = [(a, v) for a in partners for v in partners if a is not v]
    # Reads first, while every seeded id belongs to its partner alone.
    for route in [r for r in all_routes if r.method == "GET"]:
        for attacker, victim in pairs:
            await attack(route, attacker, victim, None)
    for route in [r for r in all_routes if r.method != "GET"]:
        for attacker, victim in pairs:
            clean = bodies(attacker).get((route.service, route.method, route.path), {})
            await attack(route, attacker, victim, inject(clean, victim))
            await attack(route, attacker, victim, clean)

    # Each partner still sees only its own data, and its objects still carry its own marker.
    for p in partners:
        for route in [r for r in all_routes if r.method == "GET"]:
            r = await platform.clients[route.service].get(route.fill(ids(p)), headers=p.headers("read"))
            assert r.status_code < 500, route
            assert not leaks(r.text, p, partners), f"{p.tenant}'s {route} shows {leaks(r.text, p, partners)}: {r.text[:300]}"
        for service, method, template in bodies(p):
            route = next((r for r in all_routes if (r.service, r.method, r.path) == (service, "GET", template)), None)
            if route is not None and method == "PUT":
                r = await platform.clients[route.service].get(route.fill(ids(p)), headers=p.headers("admin"))  # e.g. GET /v1/providers needs admin
                assert r.status_code == 200 and own(p, service, template) in r.text, f"{p.tenant}'s {template} lost its data: {r.text[:300]}"
    # One line per endpoint in the log, for the closing note of the issue.
    for (service, method, path), statuses in sorted(report.items()):
        print(f"matrix {service:<13} {method:<6} {path:<45} {sorted(statuses)}")
    assert {(r.service, r.method, r.path) for r in all_routes} == set(report)
