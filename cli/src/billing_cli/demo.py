"""A scripted month for two partners, through the public HTTP APIs only, checked to the cent."""

from __future__ import annotations

import asyncio
import email
import functools
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.message import Message
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from billing_cli.platform import SERVICES, Platform, log
from billing_events.money import open_amount, to_minor
from billing_runtime.auth import IssuedKey, issue
from billing_runtime.db import create_engine

T = TypeVar("T")
PERIOD = "2026-10"


@dataclass(frozen=True)
class Expected:
    partner: str
    customer: str
    net: Decimal  # what rating charges for the month
    total: Decimal  # the invoice, with its tax
    pays: Decimal
    # How the buyer pays: "card" (Stripe, charged on issue), "direct_debit" (GoCardless; the demo
    # makes the bank return it), "statement" (a camt.053 line carrying the invoice's RF reference),
    # "transfer" (a bank transfer finance enters by hand), "none".
    via: str = "none"

    @property
    def status(self) -> str:
        return "paid" if open_amount(self.total, self.pays, Decimal(0)) <= 0 else "open"


# Northwind IT bills in USD, due on the 5th of the next month; Cloudy Ltd in EUR, net 14 days.
EXPECTED = (
    # 15 users (latest count) × 35.00 + 11 mailboxes × 6.75 + 300 GB × 0.12; the card on file pays it
    Expected("northwind-it", "contoso-dental", Decimal("635.25"), Decimal("635.25"), Decimal("635.25"), "card"),
    # 8 mailboxes × 6.75 + 1,000 usage records of 0.5 GB × 0.12
    Expected("northwind-it", "fabrikam-law", Decimal("114.00"), Decimal("114.00"), Decimal("0")),
    # 5 × 20.60 = 103.00 + 23 % Irish VAT (an Irish seller's domestic sale) = 126.69; paid by transfer, from the bank statement
    Expected("cloudy-ltd", "dublin-bakery", Decimal("103.00"), Decimal("126.69"), Decimal("126.69"), "statement"),
    # 10 × 20.60, intra-EU B2B to Germany: reverse charge, no VAT; part paid by a transfer entered by hand
    Expected("cloudy-ltd", "acme-gmbh", Decimal("206.00"), Decimal("206.00"), Decimal("100.00"), "transfer"),
    # 4 × 20.60, reverse charge again; the SEPA direct debit comes back unpaid, and dunning reminds
    Expected("cloudy-ltd", "hamburg-print", Decimal("82.40"), Decimal("82.40"), Decimal("0"), "direct_debit"),
)


class DemoFailure(Exception):
    pass


# The demo waits on progress, not on fixed deadlines: on a busy machine the platform is slow,
# not stuck. It gives up only when nothing has moved anywhere in the platform for this long.
STALL_SECONDS = float(os.environ.get("BILLING_DEMO_STALL_SECONDS", "180"))
REPORT_EVERY = 10.0
# What "moving" means: events applied, dead-lettered or published by any service, mail delivered.
PROGRESS_METRICS = ("billing_events_applied_total", "billing_events_dead_lettered_total", "billing_outbox_events_published_total")


class Progress:
    """How far the platform has got, read from every service's /metrics and the mail directory."""

    def __init__(self, platform: Platform | None = None) -> None:
        self.platform = platform

    def snapshot(self) -> dict[str, int]:
        counts = {"applied": 0, "published": 0, "behind": 0, "mails": 0}
        if self.platform is None:
            return counts
        for spec in SERVICES:
            try:
                text = httpx.get(self.platform.url(spec.name) + "/metrics/", timeout=5).text
            except httpx.HTTPError:
                continue  # a service restarting; the others still say whether anything moves
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in PROGRESS_METRICS[:2]:
                        counts["applied"] += int(sample.value)
                    elif sample.name == PROGRESS_METRICS[2]:
                        counts["published"] += int(sample.value)
                    elif sample.name == "billing_consumer_lag":  # the platform's own count (billing_runtime.lag)
                        counts["behind"] += int(sample.value)
        counts["mails"] = len(list(self.platform.maildir.glob("*.eml")))
        return counts


PROGRESS = Progress()


def wait_for(what: str, probe: Callable[[], T | None], stall: float | None = None) -> T:
    """Poll `probe` until it answers. Gives up only when the platform's progress (events applied
    and published, mail delivered) has not moved for `stall` seconds; says what it waits for, and
    how far along things are, while it waits."""
    stall = STALL_SECONDS if stall is None else stall
    started = last_moved = last_report = time.monotonic()
    mark = PROGRESS.snapshot()
    while True:
        result = probe()
        if result:
            return result
        now = time.monotonic()
        if now - last_report >= REPORT_EVERY:
            last_report = now
            current = PROGRESS.snapshot()
            if current != mark:
                mark, last_moved = current, now
            log(
                f"  waiting for {what} ({now - started:.0f} s): events applied {current['applied']}, "
                f"published {current['published']}, consumers behind by {current['behind']}, mails {current['mails']}"
            )
        if now - last_moved > stall:
            raise DemoFailure(f"gave up waiting for {what}: nothing moved in the platform for {stall:.0f} s (progress {mark})")
        time.sleep(0.25)


def issue_keys(database_url: str, bootstrap: str, tenants: tuple[str, ...]) -> list[IssuedKey]:
    async def run() -> list[IssuedKey]:
        engine = create_engine(database_url, pool_size=1)
        try:
            return [await issue(engine, bootstrap, t, "admin", label="billing demo", now=datetime.now(UTC)) for t in tenants]
        finally:
            await engine.dispose()

    return asyncio.run(run())


class Api:
    """The demo's HTTP client: each partner calls with its own API key (issued at the start, as an
    operator would with `billing keys issue`), or names itself in X-Tenant-Id when the platform
    runs behind a trusted gateway (`AUTH_MODE=trusted_header`)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.http = httpx.Client(timeout=30)
        self.keys: dict[str, str] = {}
        self.keys_issued_at = 0.0

    def issue_keys(self, *tenants: str) -> None:
        if not self.platform.api_keys:
            return
        # admin: each partner also sets its provider credentials (`PUT /v1/providers/...` needs admin).
        # As `billing keys issue` does: the key table (the source of truth), then the topic.
        self.keys = {t: k.key for t, k in zip(tenants, issue_keys(self.platform.database_url, self.platform.bootstrap, tenants), strict=True)}
        self.keys_issued_at = time.monotonic()

    def headers(self, tenant: str, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if self.platform.api_keys else {"X-Tenant-Id": tenant}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def request(self, method: str, service: str, path: str, tenant: str, body: Any = None, idempotency_key: str | None = None) -> httpx.Response:
        while True:
            r = self.http.request(method, self.platform.url(service) + path, json=body, headers=self.headers(tenant, idempotency_key))
            # Every service reads a new key from the key topic within moments of its issue.
            fresh = time.monotonic() - self.keys_issued_at < 30
            if r.status_code == 401 and fresh and r.json().get("code") == "api_key_invalid":
                time.sleep(0.2)
                continue
            return r

    def call(self, method: str, service: str, path: str, tenant: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        r = self.request(method, service, path, tenant, body)
        if r.status_code not in ok:
            raise DemoFailure(f"{method} {service}{path} → {r.status_code}: {r.text[:500]}")
        return r.json()

    def post_file(self, service: str, path: str, tenant: str, content: bytes, content_type: str, ok: tuple[int, ...] = (200, 201)) -> Any:
        r = self.http.post(self.platform.url(service) + path, content=content, headers={**self.headers(tenant), "Content-Type": content_type})
        if r.status_code not in ok:
            raise DemoFailure(f"POST {service}{path} → {r.status_code}: {r.text[:500]}")
        return r.json()

    def restarted(self) -> None:
        """A restarted service reads the key topic again: allow it the same moments as at issue."""
        self.keys_issued_at = time.monotonic()

    def batch(self, path: str, tenant: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        result = self.call("POST", "usage-ingest", path, tenant, {"records": records})
        if result["accepted"] + result["duplicate"] != len(records):
            raise DemoFailure(f"{path} for {tenant}: {result['results'][:3]}")
        return result

    def orders(self, tenant: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Orders posted right after their products: usage-ingest learns rating's catalogue from its
        events a moment later and refuses an order of a product it has not heard of yet
        (`unknown_product`, nothing stored), so the batch is posted again, as a partner would,
        until usage-ingest knows the products (the ids make a repeat harmless)."""

        def posted() -> dict[str, Any] | None:
            result = self.call("POST", "usage-ingest", "/v1/orders", tenant, {"records": records})
            refused = [r for r in result["results"] if r["status"] not in ("accepted", "duplicate")]
            if any(r["code"] != "unknown_product" for r in refused):
                raise DemoFailure(f"/v1/orders for {tenant}: {refused[:3]}")
            return None if refused else dict(result)

        return wait_for(f"usage-ingest to hear of {tenant}'s products", posted)


def _customer(cid: str, name: str, country: str, currency: str, vat_id: str | None = None) -> dict[str, Any]:
    return {"id": cid, "name": name, "billing_email": f"billing@{cid}.example", "country": country, "currency": currency, "vat_id": vat_id}


def post_month(api: Api) -> dict[str, int]:
    counts = {"records": 0, "duplicates": 0}
    nw, cl = "northwind-it", "cloudy-ltd"

    api.call(
        "PUT",
        "invoicing",
        "/v1/seller",
        nw,
        {
            "name": "Northwind IT",
            "country": "US",
            "vat_id": None,
            "invoice_prefix": "NW",
            "due_rule": {"day_of_next_month": 5},
            "email": "billing@northwind.example",
            "address": {"lines": ["400 Pine Street"], "city": "Seattle", "postal_code": "98101", "region": "WA", "country": "US"},
        },
    )
    api.call(
        "PUT",
        "invoicing",
        "/v1/seller",
        cl,
        {
            "name": "Cloudy Ltd",
            "country": "IE",
            "vat_id": "IE6388047V",
            "invoice_prefix": "CL",
            "due_rule": {"net_days": 14},
            "email": "accounts@cloudy.example",
            "address": {"lines": ["1 Grand Canal Square"], "city": "Dublin", "postal_code": "D02 P820", "country": "IE"},
            "registration": "IE-CRO 123456",
            "iban": "IE29AIBK93115212345678",
            "bic": "AIBKIE2D",
        },
    )
    api.call(
        "PUT",
        "notify",
        "/v1/brand",
        nw,
        {
            "sender_name": "Northwind IT Billing",
            "sender_email": "billing@northwind.example",
            "logo_url": None,
            "primary_color": "#0B5394",
            "footer": "Northwind IT, 1 Harbour Way",
        },
    )
    api.call(
        "PUT",
        "notify",
        "/v1/brand",
        cl,
        {"sender_name": "Cloudy Ltd", "sender_email": "accounts@cloudy.example", "logo_url": None, "primary_color": "#38761D", "footer": "Cloudy Ltd, Dublin"},
    )

    for code, name, price, rule in (
        ("USR-SUP", "User support", "35.00", "latest"),
        ("EML-HST", "Hosted email", "6.75", "contracted"),
        ("BKP-GB", "Backup storage per GB", "0.12", "usage_sum"),
    ):
        api.call(
            "PUT",
            "rating",
            f"/v1/products/{code}",
            nw,
            {"name": name, "unit_price": price, "currency": "USD", "description": None, "category": None, "quantity_rule": rule},
        )
    api.call(
        "PUT",
        "rating",
        "/v1/products/M365-BP",
        cl,
        {
            "name": "Microsoft 365 Business Premium",
            "unit_price": "20.60",
            "currency": "EUR",
            "description": None,
            "category": "SaaS",
            "quantity_rule": "contracted",
        },
    )

    api.batch("/v1/customers", nw, [_customer("contoso-dental", "Contoso Dental", "US", "USD"), _customer("fabrikam-law", "Fabrikam Law", "US", "USD")])
    api.batch(
        "/v1/customers",
        cl,
        [
            _customer("dublin-bakery", "Dublin Bakery", "IE", "EUR", "IE9825613N"),
            _customer("acme-gmbh", "Acme GmbH", "DE", "EUR", "DE136695976"),
            _customer("hamburg-print", "Hamburg Print GmbH", "DE", "EUR", "DE811907980"),
        ],
    )

    api.orders(
        nw,
        [
            {"id": "nw-o-1", "customer_id": "contoso-dental", "product_code": "EML-HST", "quantity": "11", "start_date": "2026-09-01"},
            {"id": "nw-o-2", "customer_id": "fabrikam-law", "product_code": "EML-HST", "quantity": "8", "start_date": "2026-10-14"},
        ],
    )
    api.orders(
        cl,
        [
            {"id": "cl-o-1", "customer_id": "dublin-bakery", "product_code": "M365-BP", "quantity": "5", "start_date": "2026-10-01"},
            {"id": "cl-o-2", "customer_id": "acme-gmbh", "product_code": "M365-BP", "quantity": "10", "start_date": "2026-10-01"},
            {"id": "cl-o-3", "customer_id": "hamburg-print", "product_code": "M365-BP", "quantity": "4", "start_date": "2026-10-01"},
        ],
    )
    api.batch(
        "/v1/quantities",
        nw,
        [
            {
                "id": f"nw-q-{day}",
                "customer_id": "contoso-dental",
                "product_code": "USR-SUP",
                "observed_at": f"2026-10-{day:02d}T23:00:00Z",
                "source": "directory",
                "quantity": str(n),
            }
            for day, n in ((1, 14), (15, 16), (30, 15))
        ],
    )
    contoso_usage = [
        {"id": f"nw-u-c{i}", "customer_id": "contoso-dental", "product_code": "BKP-GB", "quantity": q, "timestamp": f"2026-10-{d:02d}T02:00:00Z"}
        for i, (q, d) in enumerate((("120.5", 3), ("80.25", 12), ("99.25", 28)))
    ]
    api.batch("/v1/usage", nw, contoso_usage)
    fabrikam_usage = [
        {
            "id": f"nw-u-f{i}",
            "customer_id": "fabrikam-law",
            "product_code": "BKP-GB",
            "quantity": "0.5",
            "timestamp": f"2026-10-{1 + i % 31:02d}T{i % 24:02d}:00:00Z",
        }
        for i in range(1000)
    ]
    for start in (0, 500):
        result = api.batch("/v1/usage", nw, fabrikam_usage[start : start + 500])
        counts["records"] += result["accepted"]
    # A partner retrying a batch it already sent: every record comes back as a duplicate.
    replay = api.batch("/v1/usage", nw, fabrikam_usage[:500])
    counts["duplicates"] = replay["duplicate"]
    if replay["accepted"]:
        raise DemoFailure("a replayed batch was accepted again")
    counts["records"] += len(contoso_usage)
    return counts


def close_period(api: Api) -> None:
    for tenant in ("northwind-it", "cloudy-ltd"):

        def ready(t: str = tenant) -> bool:
            # The bill run rates what rating has seen: wait until it has every subscription and usage.
            expected = [e for e in EXPECTED if e.partner == t]
            for e in expected:
                from billing_events import account_id

                charges = api.call("GET", "rating", f"/v1/accounts/{account_id(t, e.customer)}/charges?period={PERIOD}", t)
                total = sum((Decimal(line["amount"]["amount"]) for line in charges.get("lines", [])), Decimal(0))
                if total != e.net:
                    return False
            return True

        wait_for(f"rating to see {tenant}'s month", ready)
        run = api.call("POST", "rating", "/v1/bill-runs", tenant, {"period": PERIOD})
        again = api.call("POST", "rating", "/v1/bill-runs", tenant, {"period": PERIOD})
        if again["created"] or again["bill_run_id"] != run["bill_run_id"]:
            raise DemoFailure("a second bill run for the same period was not recognised")
        log(f"bill run {tenant} {PERIOD}: {run['buyers']} buyers, {run['lines']} lines")


def invoices_of(api: Api, tenant: str) -> list[dict[str, Any]]:
    return list(api.call("GET", "invoicing", f"/v1/invoices?period={PERIOD}&limit=100", tenant)["items"])


def _decoded(part: Message) -> str:
    """The text of a (non-multipart) MIME part."""
    payload = part.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else ""


def find_invoice(api: Api, e: Expected) -> dict[str, Any] | None:
    from billing_events import account_id

    account = account_id(e.partner, e.customer)
    return next((i for i in invoices_of(api, e.partner) if i["buyer_account_id"] == account), None)


def pay(api: Api) -> None:
    """Bank transfers entered by hand (the card and the direct debit are collected by payments)."""
    for e in EXPECTED:
        if e.via != "transfer":
            continue
        invoice = wait_for(f"the invoice of {e.customer}", functools.partial(find_invoice, api, e))
        currency = invoice["currency"]
        body = {
            "id": f"bank-{e.customer}",
            "invoice_id": invoice["id"],
            "invoice_number": None,
            "amount": str(e.pays),
            "currency": currency,
            "received_on": "2026-11-20",
            "reference": invoice["number"],
        }

        def recorded(body: dict[str, Any] = body, e: Expected = e) -> bool:
            return api.request("POST", "payments", "/v1/payments", e.partner, body, idempotency_key=f"demo-{body['id']}").status_code in (200, 201)

        wait_for(
            f"payments to know invoice {invoice['number']}",
            recorded,
        )


# --- collection: a card, a direct debit, a bank statement ------------------------------------


class Provider:
    """A partner's own account at a provider (here: its sandbox), as the partner sets it up in the
    provider's dashboard: the webhook endpoint pointing at payments, then the credentials given to
    payments with `PUT /v1/providers/{provider}`."""

    def __init__(self, api: Api, provider: str, tenant: str) -> None:
        self.api, self.provider, self.tenant = api, provider, tenant
        self.base = api.platform.provider_url(provider)
        self.key = f"sk_test_{tenant}" if provider == "stripe" else f"sandbox_{tenant}"
        self.http = httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)
        webhook = f"{api.platform.url('payments')}/v1/webhooks/{provider}/{tenant}"
        if provider == "stripe":
            secret = self.ok(self.http.post("/v1/webhook_endpoints", data={"url": webhook}))["secret"]
        else:
            secret = f"gc-demo-{secrets.token_hex(16)}"
            self.ok(self.http.post("/_sandbox/webhook_endpoints", json={"url": webhook, "secret": secret}))
        shown = api.call("PUT", "payments", f"/v1/providers/{provider}", tenant, {"api_key": self.key, "webhook_secret": secret})
        if self.key in str(shown) or secret in str(shown):
            raise DemoFailure(f"payments showed {tenant}'s {provider} credentials back")

    def ok(self, r: httpx.Response) -> Any:
        if r.status_code >= 300:
            raise DemoFailure(f"{self.provider} {r.request.method} {r.request.url.path} → {r.status_code}: {r.text[:300]}")
        return r.json()


def account_of(e: Expected) -> str:
    from billing_events import account_id

    return account_id(e.partner, e.customer)


def wait_method_active(api: Api, e: Expected, method_id: str) -> dict[str, Any]:
    def active() -> dict[str, Any] | None:
        items = api.call("GET", "payments", f"/v1/accounts/{account_of(e)}/payment-methods", e.partner)["items"]
        return next((m for m in items if m["method_id"] == method_id and m["status"] == "active"), None)

    return wait_for(f"{e.customer}'s {method_id} to be active", active)


def set_up_methods(api: Api) -> dict[str, Provider]:
    """Buyers paying by card or direct debit give their details on the provider's own page (Stripe.js
    confirming a SetupIntent; GoCardless's billing request flow), never to the platform."""
    providers: dict[str, Provider] = {}
    for e in EXPECTED:
        if e.via not in ("card", "direct_debit"):
            continue
        name = "stripe" if e.via == "card" else "gocardless"
        provider = providers.get(e.partner) or Provider(api, name, e.partner)
        providers[e.partner] = provider
        body = {
            "id": f"{e.via}-{e.customer}",
            "type": e.via,
            "email": f"billing@{e.customer}.example",
            "name": e.customer.replace("-", " ").title(),
            "currency": "USD" if e.partner == "northwind-it" else "EUR",
        }
        method = api.call("POST", "payments", f"/v1/accounts/{account_of(e)}/payment-methods", e.partner, body)
        if e.via == "card":
            setup_intent = method["client_secret"].split("_secret_")[0]
            provider.ok(provider.http.post(f"/v1/setup_intents/{setup_intent}/confirm", data={"payment_method": "pm_card_visa"}))
        else:
            page = httpx.post(method["authorisation_url"], json={"iban": "DE89370400440532013000", "account_holder_name": "Hamburg Print GmbH"}, timeout=30)
            provider.ok(page)
        active = wait_method_active(api, e, body["id"])
        log(f"{e.customer}: {e.via.replace('_', ' ')} set up at {name} ({active['method_ref']}), active")
    return providers


def attempts_of(api: Api, e: Expected, invoice_id: str) -> list[dict[str, Any]]:
    """The invoice's collection attempts; none while payments has not yet learnt of the invoice (404)."""
    r = api.request("GET", "payments", f"/v1/invoices/{invoice_id}/attempts", e.partner)
    if r.status_code == 404 and r.json().get("code") == "invoice_not_found":
        return []
    if r.status_code != 200:
        raise DemoFailure(f"GET payments/v1/invoices/{invoice_id}/attempts → {r.status_code}: {r.text[:500]}")
    return list(r.json()["items"])


def collect_card(api: Api, e: Expected, providers: dict[str, Provider]) -> dict[str, Any]:
    """The card on file is charged off session when the invoice is issued."""
    invoice = wait_for(f"the invoice of {e.customer}", lambda: find_invoice(api, e))
    attempts = wait_for(
        f"{e.customer}'s card to be charged",
        lambda: a if (a := attempts_of(api, e, invoice["id"])) and a[-1]["status"] in ("succeeded", "failed") else None,
    )
    if [(a["method"], a["provider"], a["status"]) for a in attempts] != [("card", "stripe", "succeeded")]:
        raise DemoFailure(f"{e.customer}: card attempts {attempts}")
    intent = providers[e.partner].ok(providers[e.partner].http.get(f"/v1/payment_intents/{attempts[0]['provider_ref']}"))
    if (intent["status"], intent["amount"], intent["currency"]) != ("succeeded", to_minor(e.total, invoice["currency"]), invoice["currency"].lower()):
        raise DemoFailure(f"{e.customer}: Stripe shows {intent['status']} {intent['amount']} {intent['currency']}, invoice {invoice['total']}")
    return {"invoice": invoice, "attempt": attempts[0], "intent": intent}


def fail_direct_debit(api: Api, e: Expected, providers: dict[str, Provider]) -> dict[str, Any]:
    """The direct debit is submitted for the due date; the payer's bank returns it (GoCardless's
    `payment_failed` scenario simulator: insufficient funds)."""
    invoice = wait_for(f"the invoice of {e.customer}", lambda: find_invoice(api, e))
    first = wait_for(
        f"{e.customer}'s direct debit to be submitted",
        lambda: a[0] if (a := attempts_of(api, e, invoice["id"])) and a[0]["provider_ref"] else None,
    )
    gc = providers[e.partner]
    payment = gc.ok(gc.http.get(f"/payments/{first['provider_ref']}"))["payments"]
    if (payment["amount"], payment["currency"], payment["charge_date"]) != (to_minor(e.total, invoice["currency"]), invoice["currency"], invoice["due_on"]):
        raise DemoFailure(f"{e.customer}: GoCardless payment {payment} does not collect {invoice['total']} on {invoice['due_on']}")
    gc.ok(gc.http.post("/scenario_simulators/payment_failed/actions/run", json={"data": {"links": {"resource": payment["id"]}}}))
    failed = wait_for(
        f"{e.customer}'s direct debit to fail",
        lambda: a[0] if (a := attempts_of(api, e, invoice["id"])) and a[0]["status"] == "failed" else None,
    )
    if failed["reason_code"] != "insufficient_funds":
        raise DemoFailure(f"{e.customer}: failure reason {failed['reason_code']!r}, expected insufficient_funds")
    return {"invoice": invoice, "attempt": failed, "payment": payment}


def camt053(message_id: str, booked: str, amount: Decimal, currency: str, remittance: str, debtor: str) -> bytes:
    """The seller's bank statement (ISO 20022 camt.053) with one credit line."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{message_id}</MsgId><CreDtTm>{booked}T18:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{message_id}-1</Id><Acct><Id><IBAN>IE29AIBK93115212345678</IBAN></Id></Acct>"
        f'<Ntry><Amt Ccy="{currency}">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
        f"<BookgDt><Dt>{booked}</Dt></BookgDt><NtryDtls><TxDtls><RltdPties><Dbtr><Nm>{debtor}</Nm></Dbtr></RltdPties>"
        f"<RmtInf><Ustrd>{remittance}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry></Stmt>"
        "</BkToCstmrStmt></Document>"
    ).encode()


def import_statement(api: Api, e: Expected) -> dict[str, Any]:
    """The buyer transfers the amount quoting the invoice's RF creditor reference; the seller
    imports its bank statement and payments matches the line by that reference."""
    invoice = wait_for(f"the invoice of {e.customer}", lambda: find_invoice(api, e))

    def known() -> dict[str, Any] | None:
        r = api.request("GET", "payments", f"/v1/invoices/{invoice['id']}", e.partner)
        return dict(r.json()) if r.status_code == 200 else None

    reference = wait_for(f"payments to know invoice {invoice['number']}", known)["creditor_reference"]
    spaced = " ".join(reference[i : i + 4] for i in range(0, len(reference), 4))  # as printed on the invoice
    statement = camt053(f"STMT-{e.partner}-20261120", "2026-11-20", e.pays, invoice["currency"], f"Invoice {spaced}", e.customer.replace("-", " ").upper())
    result = api.post_file("payments", "/v1/bank-statements?format=camt.053", e.partner, statement, "application/xml")
    lines = [(line["status"], line["matched_by"], line["invoice_id"]) for line in result["lines"]]
    if lines != [("matched", "reference", invoice["id"])]:
        raise DemoFailure(f"{e.customer}: statement line not matched by its reference {reference}: {result}")
    return {"invoice": invoice, "reference": reference, "statement": result}


def collect(api: Api, providers: dict[str, Provider]) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for e in EXPECTED:
        if e.via == "card":
            paths["card"] = {"expected": e, **collect_card(api, e, providers)}
        elif e.via == "direct_debit":
            paths["direct_debit"] = {"expected": e, **fail_direct_debit(api, e, providers)}
        elif e.via == "statement":
            paths["statement"] = {"expected": e, **import_statement(api, e)}
    return paths


# --- dunning on its days -----------------------------------------------------------------------


def restart_dunning(api: Api, today: date | None) -> None:
    """Dunning's today is its clock (`BILLING_CLOCK_FIXED_AT`, as in tests): restart it frozen at
    `today` (or back on the system clock) with the background loop off, so only the demo's
    `POST /v1/dunning/evaluate` moves cases."""
    platform = api.platform
    log(f"dunning: restarting with its clock at {today} (background loop off)" if today else "dunning: restarting on the system clock")
    platform.stop_service("dunning")
    extra = {"BILLING_CLOCK_FIXED_AT": f"{today.isoformat()}T09:00:00+00:00", "DUNNING_EVALUATE_IN_BACKGROUND": "false"} if today else {}
    platform.start_service("dunning", extra)
    platform.wait_ready("dunning")
    api.restarted()


def walk_dunning(api: Api, path: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the seller's cases on the days of its policy's steps up to the first retry: what the
    failed direct debit's case reaches each day must be exactly what the policy says."""
    e: Expected = path["expected"]
    invoice = path["invoice"]
    due = date.fromisoformat(invoice["due_on"])
    policy = api.call("GET", "dunning", "/v1/dunning-policy", e.partner)["steps"]
    first_retry = min((s["days_after_due"] for s in policy if s["action"] == "retry"), default=max(s["days_after_due"] for s in policy))
    days = sorted({s["days_after_due"] for s in policy if s["days_after_due"] <= first_retry})
    walked = []
    before = 0
    try:
        for day in days:
            today = due + timedelta(days=day)
            restart_dunning(api, today)
            result = api.call("POST", "dunning", "/v1/dunning/evaluate", e.partner)
            if result["evaluated_on"] != today.isoformat():
                raise DemoFailure(f"dunning evaluated on {result['evaluated_on']}, not {today}")
            mine = [(r["step"], r["action"]) for r in result["reached"] if r["invoice_id"] == invoice["id"]]
            want = [(s["step"], s["action"]) for s in policy if before < s["days_after_due"] <= day]
            if mine != want:
                raise DemoFailure(f"{e.customer} on {today} (due + {day}): reached {mine}, policy says {want}")
            walked.append({"day": day, "on": today, "reached": result["reached"], "mine": mine})
            before = day
        cases = api.call("GET", "dunning", f"/v1/cases?account_id={invoice['buyer_account_id']}", e.partner)["items"]
        case = next(c for c in cases if c["invoice_id"] == invoice["id"])
        standing = api.call("GET", "dunning", f"/v1/accounts/{invoice['buyer_account_id']}/standing", e.partner)
    finally:
        restart_dunning(api, None)
    last = walked[-1]["mine"][-1] if walked and walked[-1]["mine"] else None
    if last is None or (case["step"], case["step_action"], case["status"]) != (last[0], last[1], "open"):
        raise DemoFailure(f"{e.customer}: case at step {case['step']} {case['step_action']} ({case['status']}), expected {last}")
    failure = standing.get("last_payment_failure") or {}
    if failure.get("reason_code") != path["attempt"]["reason_code"]:
        raise DemoFailure(f"{e.customer}: standing shows last failure {failure}, expected {path['attempt']['reason_code']}")
    path.update(walked=walked, case=case, standing=standing)
    if any(a == "retry" for _, a in walked[-1]["mine"]):
        # Dunning's retry is payments' attempt 2: a new direct debit, submitted to GoCardless.
        path["attempts"] = wait_for(
            f"{e.customer}'s retried direct debit",
            lambda: a if len(a := attempts_of(api, e, invoice["id"])) == 2 and a[1]["provider_ref"] else None,
        )
    else:
        path["attempts"] = attempts_of(api, e, invoice["id"])
    return walked


def mail_received(platform: Platform) -> list[Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(platform.maildir.glob("*.eml"))]


def expect_mail(platform: Platform, path: dict[str, Any], subject: str) -> Message:
    """Wait for the email with this subject (`{number}`: the invoice's) to the path's buyer."""
    e: Expected = path["expected"]
    to, wanted = f"billing@{e.customer}.example", subject.format(number=path["invoice"]["number"])

    def found() -> Message | None:
        return next((m for m in mail_received(platform) if m["To"] and to in m["To"] and m["Subject"] == wanted), None)

    message = wait_for(f"the email {wanted!r} to {to}", found)
    path.setdefault("mails", []).append(wanted)
    return message


def check_invoice_pdfs(api: Api, mails: list[Message], rows: list[tuple[Expected, dict[str, Any]]]) -> int:
    """Each invoice email carries the invoice's PDF (fetched by notify from invoicing's shared link)
    and links it; the attachment is the document invoicing serves to the seller's key."""
    for e, invoice in rows:
        subject = f"Invoice {invoice['number']} from "
        mail = next((m for m in mails if (m["Subject"] or "").startswith(subject)), None)
        if mail is None:
            raise DemoFailure(f"no email {subject!r}")
        attached = [(part.get_filename(), part.get_content_type(), part.get_payload(decode=True)) for part in mail.walk() if part.get_filename()]
        served = api.request("GET", "invoicing", f"/v1/invoices/{invoice['id']}/pdf", e.partner)
        detail = api.call("GET", "invoicing", f"/v1/invoices/{invoice['id']}", e.partner)
        link = next((d["shared_url"] for d in detail["documents"] if d["kind"] == "pdf"), None)
        if served.status_code != 200 or attached != [(f"{invoice['number']}.pdf", "application/pdf", served.content)]:
            names = [(n, t, len(c or b"")) for n, t, c in attached]
            raise DemoFailure(f"the email {subject!r} carries {names}, not {invoice['number']}.pdf ({len(served.content)} bytes)")
        html = next(_decoded(part) for part in mail.walk() if part.get_content_type() == "text/html")
        if not link or f'href="{link}"' not in html or api.http.get(link).content != served.content:
            raise DemoFailure(f"the email {subject!r} does not link the PDF's shared link {link!r}, or the link does not open it")
    return len(rows)


def portal_links(api: Api) -> dict[str, str]:
    """Invite one partner admin and one end customer's contact to the portal (the partner's admin
    key, as a partner's system would) and read their sign-in links from the mail notify sent."""
    invites = {
        "partner admin of northwind-it": {"email": "admin@northwind.example", "name": "Nora Northwind", "role": "partner_admin"},
        "contact of contoso-dental": {"email": "ap@contoso-dental.example", "name": "Carl Contoso", "role": "customer_admin", "customer_id": "contoso-dental"},
    }
    links = {}
    for who, body in invites.items():
        api.call("POST", "portal", "/v1/portal/invitations", "northwind-it", body, ok=(201,))

        def link(to: str = body["email"]) -> str | None:
            for message in reversed(mail_received(api.platform)):
                if message["To"] and to in message["To"]:
                    text = _decoded(next(p for p in message.walk() if p.get_content_type() == "text/plain"))
                    found = re.search(r"https?://\S+/sign-in/\S+", text)
                    if found:
                        return found.group(0)
            return None

        links[who] = wait_for(f"the portal invitation to {body['email']}", link)
    return links


def show_paths(paths: dict[str, dict[str, Any]]) -> None:
    card, dd, bank = paths["card"], paths["direct_debit"], paths["statement"]
    log("\nCollection paths")
    i = card["invoice"]
    log(f"\n1. Card on file (Stripe): {card['expected'].customer}, {i['number']}, {i['total']} {i['currency']}")
    log(f"   saved with SetupIntent + pm_card_visa; charged off session on issue: {card['intent']['id']} {card['intent']['status']}")
    log(f"   attempt {card['attempt']['attempt_no']} {card['attempt']['status']} → PaymentSucceeded → invoice {i['number']} paid")
    log(f"   email: {'; '.join(card['mails'])}")
    i = dd["invoice"]
    log(f"\n2. Direct debit (GoCardless): {dd['expected'].customer}, {i['number']}, {i['total']} {i['currency']}, due {i['due_on']}")
    log(
        f"   mandate via billing request; {dd['payment']['id']} for {dd['payment']['charge_date']} returned by the bank: "
        f"{dd['attempt']['reason_code']} → PaymentFailed"
    )
    for day in dd["walked"]:
        others = sum(1 for r in day["reached"] if r["invoice_id"] != i["id"])
        steps = ", ".join(f"step {n} {a}" for n, a in day["mine"])
        log(f"   dunning evaluated {day['on']} (due + {day['day']}): {steps}" + (f" (+{others} steps of other cases)" if others else ""))
    attempts = ", ".join(f"{a['attempt_no']} {a['status']}" for a in dd["attempts"])
    log(f"   case {dd['case']['status']}, step {dd['case']['step']} {dd['case']['step_action']}; collection attempts: {attempts}")
    log(f"   emails: {'; '.join(dd['mails'])}")
    i = bank["invoice"]
    line = bank["statement"]["lines"][0]
    log(f"\n3. Bank transfer (camt.053): {bank['expected'].customer}, {i['number']}, {i['total']} {i['currency']}, reference {bank['reference']}")
    log(f"   statement {bank['statement']['statement_id']}: {line['amount']} matched by {line['matched_by']} → invoice paid")
    log(f"   email: {'; '.join(bank['mails'])}")


def run_demo(platform: Platform) -> bool:
    global PROGRESS
    PROGRESS = Progress(platform)
    api = Api(platform)
    started = time.monotonic()
    try:
        api.issue_keys("northwind-it", "cloudy-ltd")
        if platform.api_keys:
            log("issued an admin API key for northwind-it and cloudy-ltd (they set their own provider credentials); the services verify them")
        counts = post_month(api)
        n = len(EXPECTED)
        log(f"posted: {n} customers, {n} orders, 3 counts, {counts['records']} usage records ({counts['duplicates']} replayed, all duplicates)")
        providers = set_up_methods(api)
        close_period(api)
        paths = collect(api, providers)
        pay(api)
        rows = []
        for e in EXPECTED:

            def settled(e: Expected = e) -> dict[str, Any] | None:
                invoice = find_invoice(api, e)
                return invoice if invoice and invoice["status"] == e.status and Decimal(invoice["amount_paid"]) == e.pays else None

            invoice = wait_for(f"{e.customer}'s invoice to be {e.status}", settled)
            if Decimal(invoice["total"]) != e.total:
                raise DemoFailure(f"{e.customer}: total {invoice['total']} != expected {e.total}")
            rows.append((e, invoice))

        # An invoice each, a receipt per payment, a notice of the failed direct debit.
        expected_mails = len(EXPECTED) + sum(1 for e in EXPECTED if e.pays > 0) + sum(1 for e in EXPECTED if e.via == "direct_debit")
        mails = wait_for(f"{expected_mails} emails", lambda: m if len(m := mail_received(platform)) >= expected_mails else None)
        for e, invoice in rows:
            to = f"billing@{e.customer}.example"
            subjects = [m["Subject"] for m in mails if m["To"] and to in m["To"]]
            if not any(invoice["number"] in (s or "") for s in subjects):
                raise DemoFailure(f"no invoice email to {to} naming {invoice['number']}: {subjects}")
        pdfs = check_invoice_pdfs(api, mails, rows)
        log(f"invoice emails: {pdfs} of {len(rows)} carry their invoice's PDF (Factur-X), the same bytes as invoicing serves, and its shared link")

        def cases_settled() -> dict[str, dict[str, Any]] | None:
            found = {}
            for e, invoice in rows:
                cases = api.call("GET", "dunning", f"/v1/cases?account_id={invoice['buyer_account_id']}", e.partner)["items"]
                case = next((c for c in cases if c["invoice_id"] == invoice["id"]), None)
                want = "closed" if e.status == "paid" else "open"
                if case is None or case["status"] != want:
                    return None
                found[invoice["id"]] = case
            return found

        cases = wait_for("dunning cases to match the payments", cases_settled)
        expect_mail(platform, paths["card"], "Payment received for invoice {number}")
        expect_mail(platform, paths["statement"], "Payment received for invoice {number}")
        expect_mail(platform, paths["direct_debit"], "Payment for invoice {number} failed")
        for day in walk_dunning(api, paths["direct_debit"]):
            if any(action == "remind" for _, action in day["mine"]):
                days = f"{day['day']} day" + ("" if day["day"] == 1 else "s")
                expect_mail(platform, paths["direct_debit"], f"Reminder: invoice {{number}} is {days} overdue")
        mails = mail_received(platform)
    except DemoFailure as failure:
        log(f"\nDEMO FAILED: {failure}\nService logs are in {platform.state_dir / 'logs'}")
        return False

    log("")
    header = (
        f"{'partner':<14} {'customer':<16} {'invoice':<11} {'issued':<11} {'due':<11} "
        f"{'total':>10} {'paid':>10} {'open':>10} {'status':<6} {'dunning':<8} emails"
    )
    log(header)
    log("-" * len(header))
    for e, invoice in rows:
        to = f"billing@{e.customer}.example"
        n_mail = sum(1 for m in mails if m["To"] and to in m["To"])
        log(
            f"{e.partner:<14} {e.customer:<16} {invoice['number']:<11} {invoice['issued_on']:<11} {invoice['due_on']:<11} "
            f"{invoice['total'] + ' ' + invoice['currency']:>10} {invoice['amount_paid']:>10} {invoice['open_amount']:>10} "
            f"{invoice['status']:<6} {cases[invoice['id']]['status']:<8} {n_mail}"
        )
    show_paths(paths)
    if platform.api_keys:
        links = portal_links(api)
        log(f"\nportal: {platform.url('portal')}/p/northwind-it/ (one-time sign-in links, valid 15 minutes, emailed by notify):")
        for who, url in links.items():
            log(f"  {who:<32} {url}")
    log(f"\nDemo passed in {time.monotonic() - started:.1f}s: {len(rows)} invoices, {sum(1 for e in EXPECTED if e.pays > 0)} payments, {len(mails)} emails.")
    return True
