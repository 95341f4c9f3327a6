"""The cross-tenant matrix: every route of every service (read from each app's routes, so a new
route is attacked without touching this file, or the test fails naming what it needs), run by an
attacker tenant with its read, write and admin keys against each victim tenant's world: the
victim's customer, order, usage, products, discount, bill run, subscription, an issued invoice
(and its PDF, XML, shared links), a wholesale invoice with its comparison report, a credit note, a
bank transfer, a payment method, bank accounts, a dunning policy, a brand, a webhook endpoint and
an email delivery.

Each request is valid (a hand-written body per write route, checked by the app: a
`validation_error` fails the matrix) and names the victim's ids in its path, query and body, with
the victim's tenant spoofed in `X-Tenant-Id` and `?tenant=`. The answer must not be a 5xx, must
carry no datum of the victim (names, emails, addresses, ids the caller did not send, invoice and
credit note numbers, amounts, IBANs, secrets; JSON, text, PDF and XLSX bodies are read), and a
read naming the victim's objects must answer exactly what it answers for ids nobody has (404 for
an object; an empty page for a filter). Afterwards the victim's rows (every tenant-owned table of
the six schemas), its events (outbox rows under its tenant) and what it reads back are unchanged."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from pypdf import PdfReader
from sqlalchemy import text

from billing_events import PeriodClosed, account_id, new_event, subscription_id, to_kafka
from billing_runtime.db import create_engine
from billing_runtime.testing import eventually
from notify.webhook.service import WEBHOOK_EVENT_TYPES

if TYPE_CHECKING:  # the fixtures give them; conftest is not importable as a module
    from tests.security.conftest import Partner, Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = TypeVar("T")

KEYS = ("read", "write", "admin")
SCHEMAS = ("usage_ingest", "rating", "invoicing", "payments", "dunning", "notify")
TENANT_COLUMNS = ("tenant", "seller_id", "partner_id")
# The runtime's own tables: the attacker's requests are audited and remembered under its own tenant.
RUNTIME_TABLES = {"audit_log", "idempotency_key", "inbox", "outbox"}
NOT_ROUTES = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Anyone may call these without a key (reference data, the same for everyone): still attacked.
PUBLIC = {("rating", "GET", "/v1/categories")}
SIGNED_WEBHOOK = re.compile(r"^/v1/webhooks/")
# Capability links: the unguessable token is the credential (whoever holds the victim's token may
# read the document, by design), so the attacker tries a token nobody was given.
SHARED = re.compile(r"^/v1/shared/")
# Path parameters with no object of the victim's to name (no refund file is cheap to make): an id
# nobody has, so the route is still run.
NOBODY = {"token", "file_id", "statement_id"}  # statement_id: a project-work statement needs a priced time entry
IBAN_ATTACKER = "GB82WEST12345698765432"
# The sender works on deliveries while the matrix runs (the security platform has no mail server, so
# emails are retried): these columns of delivery tables change on their own, and so do the reads of them.
VOLATILE = ("status", "attempts", "next_attempt_at", "last_error", "sent_at", "attachments")


@dataclass
class World:
    """One victim's objects: ids by the path/query parameter names the services use, and every
    datum of the victim an attacker must never see."""

    partner: Partner
    ids: dict[str, str] = field(default_factory=dict)
    data: set[str] = field(default_factory=set)
    invoice_number: str = ""

    @property
    def tenant(self) -> str:
        return self.partner.tenant


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    scope: str
    query: tuple[tuple[str, bool], ...]  # (name, required)

    @property
    def params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    @property
    def public(self) -> bool:
        return (self.service, self.method, self.path) in PUBLIC or bool(SIGNED_WEBHOOK.match(self.path) or SHARED.match(self.path))

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def routes(platform: Platform) -> list[Route]:
    """Every operation of every app's OpenAPI document (the apps' routes, as FastAPI lists them)."""
    found = []
    for service, app in platform.apps.items():
        for path, operations in app.openapi()["paths"].items():
            if path in NOT_ROUTES:
                continue
            for method, operation in operations.items():
                query = tuple((p["name"], bool(p.get("required"))) for p in operation.get("parameters", []) if p["in"] == "query")
                found.append(Route(service, method.upper(), path, operation.get("x-billing-scope", "none"), query))
    assert len(found) >= 80, f"only {len(found)} routes found"
    return found


# ---------------------------------------------------------------------------------------------
# The victim's world, built once per module through the services' own HTTP APIs and events.

ADDRESS_LINE = "{m} Street 7"


def customer_record(p: Partner) -> dict[str, Any]:
    t, m = p.tenant, p.marker
    address = {"lines": [ADDRESS_LINE.format(m=m)], "city": f"{m}-city", "postal_code": "D01 1234", "country": "IE"}
    return {"id": f"{t}-cust", "name": f"{m} Dental", "billing_email": f"billing@{t}.example", "country": "IE", "currency": "EUR", "address": address}


def prefix(p: Partner) -> str:
    return "".join(ch for ch in p.tenant.upper() if ch.isalnum())[-10:]


def closed_period(p: Partner, account: str, start: str, end: str, tier: str) -> PeriodClosed:
    """A month closed for the victim's customer, as rating would emit it (the matrix needs an
    invoice per victim, not rating's rules)."""
    line = {
        "line_id": str(uuid.uuid4()),
        "product_code": f"{p.tenant}-PRD",
        "description": f"Support, {p.marker}",
        "category": None,
        "service_period_start": start,
        "service_period_end": end,
        "quantity": "3",
        "unit_price": {"amount": "1440.29", "currency": "EUR"},
        "amount": {"amount": "4320.87", "currency": "EUR"},
        "quantity_rule": "contracted",
        "end_customer_id": None,
    }
    closed = {"bill_run_id": str(uuid.uuid4()), "seller_id": p.tenant, "buyer_account_id": account, "period_start": start, "period_end": end}
    return PeriodClosed.model_validate({**closed, "currency": "EUR", "tier": tier, "lines": [line]})


async def publish(platform: Platform, p: Partner, *periods: PeriodClosed) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap)
    await producer.start()
    try:
        for closed in periods:
            message = to_kafka(new_event(closed, source="/services/rating", tenant=p.tenant, subject=closed.buyer_account_id))
            await producer.send_and_wait(message.topic, message.value, key=message.key, headers=message.headers)
    finally:
        await producer.stop()


async def build_world(platform: Platform, p: Partner) -> World:
    c, h, t, m = platform.clients, p.headers("admin"), p.tenant, p.marker
    w = World(p)
    cust, code = f"{t}-cust", f"{t}-PRD"
    acct = account_id(t, cust)
    w.ids.update(customer_id=cust, order_id=f"{t}-ord", record_id=f"{t}-use", code=code, product_code=code, discount_id=f"{t}-DSC")
    w.ids.update(account_id=acct, buyer_account_id=acct, subscription_id=subscription_id(t, f"{t}-ord"), tenant=t)

    async def ok(service: str, method: str, path: str, body: Any = None, status: tuple[int, ...] = (200, 201)) -> Any:
        r = await c[service].request(method, path, json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code in status, f"building {t}'s world: {service} {method} {path} → {r.status_code} {r.text[:300]}"
        return r.json() if r.content else None

    record = {"customer_id": cust, "product_code": code}
    await ok("usage-ingest", "POST", "/v1/customers", {"records": [customer_record(p)]})
    await ok("rating", "PUT", f"/v1/products/{code}", {"name": f"{m} Support", "unit_price": "1440.29", "currency": "EUR", "quantity_rule": "contracted"})
    await ok(
        "rating", "PUT", f"/v1/price-list/{code}", {"effective_from": "2026-01-01", "currency": "EUR", "price": {"model": "per_unit", "unit_price": "1440.29"}}
    )
    await ok("rating", "PUT", "/v1/seller", {"currency": "EUR", "country": "IE"})

    async def ordered() -> bool:
        # usage-ingest hears of the product from rating's event a moment after the PUT; until then
        # the order is refused (`unknown_product`) and nothing is stored, so it is posted again.
        answer = await ok("usage-ingest", "POST", "/v1/orders", {"records": [{"id": f"{t}-ord", **record, "quantity": "3", "start_date": "2026-10-01"}]})
        return bool(answer["accepted"] + answer["duplicate"])

    await eventually(ordered, f"{t}'s order accepted once usage-ingest knows {code}", interval=0.2)
    await ok("usage-ingest", "POST", "/v1/usage", {"records": [{"id": f"{t}-use", **record, "quantity": "1.5", "timestamp": "2026-10-03T10:00:00Z"}]})
    quantity = {"id": f"{t}-qty", **record, "observed_at": "2026-10-04T10:00:00Z", "source": m[:64], "quantity": "3"}
    await ok("usage-ingest", "POST", "/v1/quantities", {"records": [quantity]})

    async def discounted() -> bool:
        # rating knows the account once it has applied the CustomerUpserted event: 404 until then.
        body = {"scope": "invoice", "account_id": acct, "percent": "5", "first_period": "2027-01"}
        r = await c["rating"].request("PUT", f"/v1/discounts/{t}-DSC", json=body, headers={**h, "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code in (200, 201, 404), f"building {t}'s world: rating PUT /v1/discounts → {r.status_code} {r.text[:300]}"
        return r.status_code != 404

    await eventually(discounted, f"rating to know {t}'s customer account", interval=0.2)
    run = await ok("rating", "POST", "/v1/bill-runs", {"period": "2026-08"})
    w.ids["bill_run_id"] = run["bill_run_id"]
    seller = {"name": f"{m} Seller", "country": "IE", "vat_id": None, "invoice_prefix": prefix(p), "due_rule": {"net_days": 14}, "email": f"ar@{t}.example"}
    await ok("invoicing", "PUT", "/v1/seller", {**seller, "address": {"lines": [f"{m} Seller Road"], "city": f"{m}-town", "country": "IE"}})
    await ok("notify", "PUT", "/v1/brand", {"sender_name": "Victim Billing", "sender_email": f"billing@{t}.example", "primary_color": "#0B5394", "footer": m})
    await ok("dunning", "PUT", "/v1/dunning-policy", {"steps": [{"days_after_due": 11 + sum(t.encode()) % 300, "action": "remind"}]})
    await ok("payments", "PUT", "/v1/bank-account", {"name": f"{m} Seller Account", "iban": "IE29AIBK93115212345678"})
    await ok("payments", "PUT", f"/v1/accounts/{acct}/bank-account", {"name": f"{m} Dental", "iban": "DE89370400440532013000"})
    await ok("payments", "POST", f"/v1/accounts/{acct}/payment-methods", {"id": f"{t}-pm", "type": "bank_transfer", "name": f"{m} Dental"})
    w.ids["method_id"] = f"{t}-pm"
    # Subscribed to an event this world never emits: no delivery keeps retrying during the matrix.
    quiet = next(kind for kind in sorted(WEBHOOK_EVENT_TYPES) if "suspended" in kind)
    hook = await ok("notify", "POST", "/v1/webhook-endpoints", {"url": f"https://localhost:9/hooks/{t}/billing", "event_types": [quiet], "description": m})
    w.ids["endpoint_id"] = hook["endpoint_id"]
    w.data |= {hook["secret"], f"/hooks/{t}/billing"}

    # The subscription reaches rating by event: wait, so that the attack names a real one.
    async def subscribed() -> bool:
        return (await c["rating"].get(f"/v1/subscriptions/{w.ids['subscription_id']}", headers=h)).status_code == 200

    await eventually(subscribed, f"{t}'s subscription in rating", timeout=90)

    # October invoiced retail; September through the wholesale tier (its comparison report).
    await publish(platform, p, closed_period(p, acct, "2026-10-01", "2026-10-31", "retail"), closed_period(p, acct, "2026-09-01", "2026-09-30", "wholesale"))

    async def invoiced() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await c["invoicing"].get("/v1/invoices", headers=h)).json()["items"]
        return items if len(items) >= 2 else None

    invoices = {i["period_start"][:7]: i for i in await eventually(invoiced, f"{t}'s invoices", timeout=90)}
    w.ids["invoice_id"] = invoices["2026-10"]["id"]
    detail = await ok("invoicing", "GET", f"/v1/invoices/{w.ids['invoice_id']}")
    w.invoice_number = detail["number"]
    w.data |= {detail["number"], invoices["2026-09"]["number"], detail["total"], invoices["2026-09"]["id"]}

    async def reported() -> str | None:
        items = (await c["invoicing"].get("/v1/comparison-reports", headers=h)).json()["items"]
        return str(items[0]["id"]) if items else None

    w.ids["report_id"] = await eventually(reported, f"{t}'s comparison report", timeout=90)

    async def known_to_payments() -> bool:
        return (await c["payments"].get(f"/v1/invoices/{w.ids['invoice_id']}", headers=h)).status_code == 200

    await eventually(known_to_payments, "payments to learn the invoice", timeout=90)
    note = await ok("invoicing", "POST", f"/v1/invoices/{w.ids['invoice_id']}/credit-notes", {"amount": "100.00", "reason": f"{m} goodwill"})
    w.ids["credit_note_id"] = note["id"]
    w.data.add(note["number"])
    transfer = {"id": f"{t}-pay", "invoice_id": w.ids["invoice_id"], "amount": "500.00", "currency": "EUR", "received_on": "2026-11-15", "reference": m}
    w.ids["payment_id"] = (await ok("payments", "POST", "/v1/payments", transfer))["payment_id"]

    async def delivered() -> str | None:
        items = (await c["notify"].get("/v1/deliveries", headers=h)).json()["items"]
        return str(items[0]["delivery_id"]) if items else None

    w.ids["delivery_id"] = await eventually(delivered, f"a delivery to {t}'s customer", timeout=90)

    w.data |= {m, f"{t}.example", "IE29AIBK93115212345678", "DE89370400440532013000", "4320.87"}
    w.data |= {w.ids[k] for k in ("account_id", "invoice_id", "credit_note_id", "report_id", "payment_id", "bill_run_id", "delivery_id", "endpoint_id")}
    w.data |= {w.ids["subscription_id"]}
    return w


# ---------------------------------------------------------------------------------------------
# What the attacker sends: a valid body per write route, naming the victim's ids.

Body = Any  # JSON, or (bytes, content type) for a raw body, or None for none
EXAMPLES: dict[tuple[str, str, str], Callable[[World], list[Body]]] = {
    ("usage-ingest", "POST", "/v1/customers"): lambda w: [
        {"records": [{"id": w.ids["customer_id"], "name": "Attacker-made", "billing_email": "ap@attacker.example", "country": "IE", "currency": "EUR"}]}
    ],
    ("usage-ingest", "POST", "/v1/orders"): lambda w: [
        {
            "records": [
                {"id": w.ids["order_id"], "customer_id": w.ids["customer_id"], "product_code": w.ids["code"], "quantity": "1", "start_date": "2026-10-01"}
            ]
        }
    ],
    ("usage-ingest", "POST", "/v1/usage"): lambda w: [
        {
            "records": [
                {
                    "id": w.ids["record_id"],
                    "customer_id": w.ids["customer_id"],
                    "product_code": w.ids["code"],
                    "quantity": "1",
                    "timestamp": "2026-10-05T10:00:00Z",
                }
            ]
        }
    ],
    ("usage-ingest", "POST", "/v1/quantities"): lambda w: [
        {
            "records": [
                {
                    "id": f"{w.tenant}-qty",
                    "customer_id": w.ids["customer_id"],
                    "product_code": w.ids["code"],
                    "observed_at": "2026-10-05T10:00:00Z",
                    "source": "attacker",
                    "quantity": "9",
                }
            ]
        }
    ],
    ("usage-ingest", "PUT", "/v1/accounts/{account_id}/billing-profile"): lambda w: [
        {"billing_email": "spy@attacker.example", "address_lines": ["1 Spy Street"], "city": "Spyville"}
    ],
    ("usage-ingest", "POST", "/v1/admin/order-history"): lambda w: [
        # The victim's customer, order and product named in a historic import of the attacker's.
        {
            "records": [
                {
                    "kind": "order",
                    "id": w.ids["order_id"],
                    "customer_id": w.ids["customer_id"],
                    "product_code": w.ids["code"],
                    "quantity": "1",
                    "start_date": "2025-06-01",
                    "requested_at": "2025-06-01T10:00:00Z",
                },
                {"kind": "change", "id": "attack-hist-change", "order_id": w.ids["order_id"], "quantity": "9", "requested_at": "2025-06-10T10:00:00Z"},
                {"kind": "cancellation", "id": "attack-hist-cancel", "order_id": w.ids["order_id"], "requested_at": "2025-06-20T10:00:00Z"},
            ]
        }
    ],
    ("usage-ingest", "POST", "/v1/orders/{order_id}/changes"): lambda w: [{"id": "attack-change", "quantity": "9", "effective_date": "2026-11-01"}],
    ("usage-ingest", "POST", "/v1/orders/{order_id}/cancellation"): lambda w: [{"id": "attack-cancel", "effective_date": "2026-12-01"}],
    ("rating", "PUT", "/v1/products/{code}"): lambda w: [{"name": "Attacker product", "unit_price": "1.00", "currency": "EUR", "quantity_rule": "contracted"}],
    ("rating", "PUT", "/v1/price-list/{code}"): lambda w: [
        {"effective_from": "2026-01-01", "currency": "EUR", "price": {"model": "per_unit", "unit_price": "1.00"}}
    ],
    ("rating", "PUT", "/v1/markup-rule"): lambda w: [{"effective_from": "2026-01-01", "markup_percent": "10"}],
    ("rating", "PUT", "/v1/seller"): lambda w: [{"currency": "EUR", "country": "IE"}],
    ("rating", "POST", "/v1/order-checks"): lambda w: [{"product_code": w.ids["code"], "start_on": "2026-10-01", "account_id": w.ids["account_id"]}],
    ("rating", "POST", "/v1/bill-runs"): lambda w: [{"period": "2026-07"}],
    ("rating", "PUT", "/v1/subscriptions/{subscription_id}/policy"): lambda w: [{"timing": "advance"}],
    ("rating", "PUT", "/v1/discounts/{discount_id}"): lambda w: [
        {"scope": "invoice", "account_id": w.ids["account_id"], "percent": "100", "first_period": "2026-10"},
        {"scope": "subscription", "subscription_id": w.ids["subscription_id"], "percent": "100", "first_period": "2026-10"},
    ],
    ("invoicing", "PUT", "/v1/seller"): lambda w: [
        {"name": "Attacker Ltd", "country": "IE", "vat_id": None, "invoice_prefix": "ATK", "due_rule": {"net_days": 7}}
    ],
    ("invoicing", "POST", "/v1/invoices/preview"): lambda w: [
        {
            "buyer_account_id": buyer,
            "period_start": "2026-10-01",
            "period_end": "2026-10-31",
            "currency": "EUR",
            "tier": tier,
            "lines": [closed_period(w.partner, buyer, "2026-10-01", "2026-10-31", tier).lines[0].model_dump(mode="json")],
        }
        for buyer, tier in ((w.ids["account_id"], "retail"), (w.ids["account_id"], "wholesale"), (w.tenant, "wholesale"))
    ],
    ("invoicing", "POST", "/v1/invoices/{invoice_id}/credit-notes"): lambda w: [{"amount": "1.00", "reason": "attack"}, {}],
    ("invoicing", "POST", "/v1/invoices/{invoice_id}/shared-links/rotate"): lambda w: [None],
    ("payments", "POST", "/v1/payments"): lambda w: [
        {"id": "attack-pay", "invoice_id": w.ids["invoice_id"], "amount": "1.00", "currency": "EUR", "received_on": "2026-11-16"},
        {"id": "attack-pay-n", "invoice_number": w.invoice_number, "amount": "1.00", "currency": "EUR", "received_on": "2026-11-16"},
    ],
    ("payments", "PUT", "/v1/providers/{provider}"): lambda w: [
        {"api_key": "sk_test_attacker_0123456789abcdef", "webhook_secret": "whsec_attacker_0123456789abcdef0123"}
    ],
    ("payments", "POST", "/v1/accounts/{account_id}/payment-methods"): lambda w: [{"id": "attack-pm", "type": "bank_transfer", "name": "Attacker"}],
    ("payments", "PUT", "/v1/accounts/{account_id}/default-payment-method"): lambda w: [{"method_id": w.ids["method_id"]}],
    ("payments", "POST", "/v1/accounts/{account_id}/payment-methods/{method_id}/confirm"): lambda w: [None],
    ("payments", "DELETE", "/v1/accounts/{account_id}/payment-methods/{method_id}"): lambda w: [None],
    ("payments", "PUT", "/v1/collection-settings"): lambda w: [{"surplus": "credit"}],
    ("payments", "PUT", "/v1/bank-account"): lambda w: [{"name": "Attacker", "iban": IBAN_ATTACKER}],
    ("payments", "PUT", "/v1/accounts/{account_id}/bank-account"): lambda w: [{"name": "Attacker", "iban": IBAN_ATTACKER}],
    ("payments", "POST", "/v1/bank-statements"): lambda w: [(camt053(w), "application/xml")],
    ("payments", "POST", "/v1/webhooks/stripe/{tenant}"): lambda w: [(provider_event(w, "stripe"), "application/json")],
    ("payments", "POST", "/v1/webhooks/gocardless/{tenant}"): lambda w: [(provider_event(w, "gocardless"), "application/json")],
    ("dunning", "PUT", "/v1/dunning-policy"): lambda w: [{"steps": [{"days_after_due": 3, "action": "remind"}]}],
    ("dunning", "POST", "/v1/dunning/evaluate"): lambda w: [None],
    ("notify", "PUT", "/v1/brand"): lambda w: [{"sender_name": "Attacker", "primary_color": "#000000"}],
    ("notify", "POST", "/v1/webhook-endpoints"): lambda w: [{"url": "https://hooks.attacker.example/x", "event_types": ["*"]}],
    ("notify", "POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): lambda w: [{"grace_seconds": 0}],
    ("notify", "DELETE", "/v1/webhook-endpoints/{endpoint_id}"): lambda w: [None],
    # The attacker claims a host name after the victim's: first come, and its own portal's only.
    ("portal", "PUT", "/v1/portal/host"): lambda w: [{"host": f"billing.{w.tenant}.example"}],
    ("portal", "DELETE", "/v1/portal/host"): lambda w: [None],
    ("portal", "POST", "/v1/portal/invitations"): lambda w: [
        {"email": "spy@attacker.example", "role": "customer_admin", "customer_id": w.ids["customer_id"]},
        {"email": "spy@attacker.example", "role": "customer_viewer", "customer_id": w.ids["account_id"]},
    ],
}
# Required query parameters that name no object of the victim's.
QUERY = {"period": "2026-10", "quarter": "2026-Q4"}


def camt053(w: World) -> bytes:
    """A statement crediting the victim's invoice, by its number, for what is left of it."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr><MsgId>ATTACK-{uuid.uuid4().hex[:8]}</MsgId></GrpHdr>
<Stmt><Id>1</Id><Acct><Id><IBAN>{IBAN_ATTACKER}</IBAN></Id></Acct>
<Ntry><Amt Ccy="EUR">10.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-11-17</Dt></BookgDt>
<NtryDtls><TxDtls><RmtInf><Ustrd>{w.invoice_number}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>""".encode()


def provider_event(w: World, provider: str) -> bytes:
    """A provider event about the victim's invoice, signed with nothing the attacker could know."""
    metadata = {"tenant": w.tenant, "invoice_id": w.ids["invoice_id"], "account_id": w.ids["account_id"], "method_id": f"{w.tenant}-pm"}
    event: dict[str, Any]
    if provider == "stripe":
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_attack", "amount": 100, "currency": "eur", "metadata": metadata}},
        }
    else:
        event = {
            "events": [
                {"id": f"EV{uuid.uuid4().hex[:10]}", "resource_type": "payments", "action": "confirmed", "links": {"payment": "PM0001"}, "metadata": metadata}
            ]
        }
    return json.dumps(event).encode()


# ---------------------------------------------------------------------------------------------
# Reading what came back.


def readable(content: bytes, content_type: str) -> str:
    """The text of a response as a person would read it: JSON and text as they are, a PDF's
    extracted text, an XLSX's cells (its XML parts)."""
    if content_type.startswith("application/pdf"):
        return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)
    if content[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist() if name.endswith(".xml"))
    return content.decode("utf-8", "replace")


def leaked(w: World, response_text: str, sent: str) -> list[str]:
    """The victim's data in a response that the caller did not itself send (an id it named may be
    echoed in "no invoice 'X'")."""
    return sorted(d for d in w.data if d in response_text and d not in sent)


async def tenant_state(platform: Platform, victims: list[World]) -> dict[tuple[str, str], Any]:
    """Per victim and tenant-owned table of the six schemas, its rows (as text, hashed), and the
    number of events in the outboxes under its tenant."""
    engine = create_engine(platform.database_url, pool_size=1)
    state: dict[tuple[str, str], Any] = {}
    try:
        async with engine.connect() as conn:
            columns = (
                await conn.execute(
                    text(
                        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = ANY(:schemas) AND column_name = ANY(:columns) ORDER BY table_schema, table_name, column_name"
                    ),
                    {"schemas": list(SCHEMAS), "columns": list(TENANT_COLUMNS)},
                )
            ).all()
            owned: dict[tuple[str, str], str] = {}
            for schema, table, column in sorted(columns, key=lambda c: TENANT_COLUMNS.index(c[2])):
                if table not in RUNTIME_TABLES:
                    owned.setdefault((schema, table), column)  # the first of TENANT_COLUMNS it has
            tenants = [w.tenant for w in victims]
            for (schema, table), column in owned.items():
                row = "to_jsonb(t) - CAST(:volatile AS text[])" if "delivery" in table else "to_jsonb(t)"
                digests = await conn.execute(
                    text(
                        f"SELECT \"{column}\", count(*) || ':' || md5(string_agg(({row})::text, '|' ORDER BY ({row})::text)) "
                        f'FROM {schema}."{table}" t WHERE "{column}" = ANY(:tenants) GROUP BY 1'
                    ),
                    {"tenants": tenants, "volatile": list(VOLATILE)},
                )
                for tenant, digest in digests:
                    state[(tenant, f"{schema}.{table}")] = digest
            for schema in SCHEMAS:
                for w in victims:
                    state[(w.tenant, f"{schema}.outbox events")] = await conn.scalar(
                        text(f"SELECT count(*) FROM {schema}.outbox WHERE headers::text LIKE :pattern"), {"pattern": f'%"{w.tenant}"%'}
                    )
    finally:
        await engine.dispose()
    return state


async def settled_state(platform: Platform, victims: list[World]) -> dict[tuple[str, str], Any]:
    """The victims' state once background work (deliveries, relays, consumers catching up) has
    stopped changing it: the same for 2 s (four looks in a row), since on a busy machine a late
    event's email can still be queued half a second after the last change."""
    state, same = await tenant_state(platform, victims), 0
    for _ in range(120):
        await asyncio.sleep(0.5)
        again = await tenant_state(platform, victims)
        same = same + 1 if again == state else 0
        if same == 4:
            return state
        state = again
    raise AssertionError("the victims' rows never stopped changing")


# ---------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worlds(platform: Platform) -> list[World]:
    started = time.perf_counter()
    built = list(await asyncio.gather(*(build_world(platform, p) for p in platform.partners[1:])))
    print(f"cross-tenant: {len(built)} victims' worlds built in {time.perf_counter() - started:.1f} s")
    return built


async def test_every_endpoint_needs_a_key(platform: Platform) -> None:
    for route in [r for r in routes(platform) if not r.public]:
        path = re.sub(r"{([^}]+)}", "anything", route.path)
        r = await platform.clients[route.service].request(route.method, path, json={})
        assert (r.status_code, r.json()["code"]) == (401, "api_key_required"), route
        r = await platform.clients[route.service].request(route.method, path, json={}, headers={"X-Tenant-Id": platform.partners[0].tenant})
        assert r.status_code == 401, route


def requests_for(route: Route, w: World) -> list[tuple[str, dict[str, str], Body]]:
    """(path, query, body) per attack of `route` on `w`; fails naming what a new route lacks."""
    values = {}
    for name in route.params:
        if name in NOBODY:
            values[name] = f"nobody{name.replace('_', '')}{abs(hash(w.tenant)) % 10**12}"
        elif name == "provider":
            values[name] = "stripe"
        else:
            assert name in w.ids, f"{route}: no object of the victim's for path parameter {name!r}; add it to build_world"
            values[name] = w.ids[name]
    path = re.sub(r"{([^}]+)}", lambda m: values[m.group(1)], route.path)
    query = {"tenant": w.tenant}
    for name, required in route.query:
        if name in w.ids:
            query[name] = w.ids[name]
        elif name in QUERY:
            query[name] = QUERY[name]
        else:
            assert not required, f"{route}: required query parameter {name!r} has no value here; add it to QUERY"
    if route.method in ("GET", "HEAD"):
        return [(path, query, None)]
    # An account route by the partner's customer id takes the body of the same route by account id.
    by_account = route.path.replace("/v1/accounts/by-customer/{customer_id}/", "/v1/accounts/{account_id}/", 1)
    example = EXAMPLES.get((route.service, route.method, route.path)) or EXAMPLES.get((route.service, route.method, by_account))
    assert example is not None, f"{route}: no attacking body; add a valid one to EXAMPLES"
    return [(path, query, body) for body in example(w)]


def nobody_version(path: str, query: dict[str, str], w: World) -> tuple[str, dict[str, str], dict[str, str]]:
    """The same request naming ids nobody has instead of the victim's, and the substitution."""
    swap = {v: f"nobody-{uuid.uuid4().hex[:12]}" for k, v in w.ids.items() if k != "tenant" and (v in path or v in query.values())}
    for old, new in swap.items():
        path = path.replace(old, new)
    return path, {k: swap.get(v, v) for k, v in query.items()}, swap


async def test_cross_tenant_matrix(platform: Platform, worlds: list[World]) -> None:
    attacker = platform.partners[0]
    all_routes = routes(platform)
    started = time.perf_counter()
    # The victims' rows, and what they read back (their own view), before the attack.
    before = await settled_state(platform, worlds)
    print(f"cross-tenant: the victims' state settled in {time.perf_counter() - started:.1f} s")
    own_reads = {}
    for w in worlds:
        for route in (r for r in all_routes if r.method == "GET" and not r.public and "deliveries" not in r.path):
            path, query, _ = requests_for(route, w)[0]
            r = await platform.clients[route.service].get(path, params=query, headers=w.partner.headers("admin"))
            assert r.status_code < 500, f"{w.tenant} reading its own {route}: {r.status_code} {r.text[:300]}"
            own_reads[(w.tenant, str(route))] = (r.status_code, readable(r.content, r.headers.get("content-type", "")))

    report: dict[str, set[int]] = {}
    spent: dict[str, float] = {}
    requests = 0
    failures: list[str] = []
    # Reads first, while nothing of the attacker's bears the victim's ids; then every write.
    for route in sorted(all_routes, key=lambda r: r.method != "GET"):
        for w in worlds:
            for path, query, body in requests_for(route, w):
                for scope in KEYS:
                    headers = {**attacker.headers(scope), "X-Tenant-Id": w.tenant, "Idempotency-Key": str(uuid.uuid4())}  # type: ignore[arg-type]  # KEYS holds the scope names
                    kwargs: dict[str, Any] = {"params": query, "headers": headers}
                    if isinstance(body, tuple):
                        kwargs["content"], headers["Content-Type"] = body
                        headers["Stripe-Signature"] = "t=1,v1=00"
                        headers["Webhook-Signature"] = "00"
                    elif body is not None:
                        kwargs["json"] = body
                    client = platform.clients[route.service]
                    sent_at = time.perf_counter()
                    r = await client.request(route.method, path, **kwargs)
                    spent[str(route)] = spent.get(str(route), 0.0) + time.perf_counter() - sent_at
                    requests += 1
                    report.setdefault(str(route), set()).add(r.status_code)
                    where = f"{route} as {attacker.tenant}/{scope} on {w.tenant}"
                    sent = path + json.dumps(query) + (body[0].decode() if isinstance(body, tuple) else json.dumps(body))
                    got = readable(r.content, r.headers.get("content-type", ""))
                    if r.status_code >= 500:
                        failures.append(f"{where} → {r.status_code}: {r.text[:200]}")
                        continue
                    if found := leaked(w, got, sent):
                        failures.append(f"{where} → {r.status_code} leaked {found}: {got[:300]}")
                    if (
                        r.status_code == 422
                        and r.headers.get("content-type", "").startswith("application/problem+json")
                        and r.json().get("code") == "validation_error"
                    ):
                        if route.scope == "none" or KEYS.index(scope) >= KEYS.index(route.scope):
                            failures.append(f"{where}: the matrix's body is not valid here, fix EXAMPLES: {r.text[:300]}")
                    if route.method == "GET" and r.status_code < 400:
                        # A read naming the victim's objects answers what it answers for nobody's.
                        nobody_path, nobody_query, swap = nobody_version(path, query, w)
                        if "/by-customer/" in route.path and w.ids["customer_id"] in swap:
                            # The account a customer id names is derived under the caller's own
                            # tenant (the attacker's): the two answers differ by that derived id only.
                            swap[account_id(attacker.tenant, w.ids["customer_id"])] = account_id(attacker.tenant, swap[w.ids["customer_id"]])
                        blank = await client.get(nobody_path, params=nobody_query, headers=headers)
                        requests += 1
                        normalised = got
                        for old, new in swap.items():
                            normalised = normalised.replace(old, new)
                        if (r.status_code, normalised) != (blank.status_code, readable(blank.content, blank.headers.get("content-type", ""))):
                            failures.append(f"{where} → {r.status_code}, but {blank.status_code} for ids nobody has: {got[:300]}")
    print(f"cross-tenant: the attack took {time.perf_counter() - started:.1f} s")
    assert not failures, "\n".join(failures)

    after = await settled_state(platform, worlds)
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"the attack changed the victims' rows or events: {changed}"
    for w in worlds:
        for route in (r for r in all_routes if r.method == "GET" and not r.public and "deliveries" not in r.path):
            path, query, _ = requests_for(route, w)[0]
            r = await platform.clients[route.service].get(path, params=query, headers=w.partner.headers("admin"))
            assert (r.status_code, readable(r.content, r.headers.get("content-type", ""))) == own_reads[(w.tenant, str(route))], (
                f"{w.tenant}'s own {route} changed under the attack: {r.text[:300]}"
            )

    # The matrix, for the closing note of issue 12; every route was run.
    assert {str(r) for r in all_routes} == set(report)
    for name, statuses in sorted(report.items()):
        print(f"matrix {name:<70} {sorted(statuses)}")
    cells = len(all_routes) * len(KEYS) * len(worlds)
    print(f"cross-tenant matrix: {len(all_routes)} routes × {len(KEYS)} keys × {len(worlds)} victims = {cells} cells, {requests} requests")
    print("cross-tenant: slowest routes", sorted(spent.items(), key=lambda kv: -kv[1])[:8])
