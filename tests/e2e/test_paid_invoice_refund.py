"""Invoicing and payments together, over HTTP and Kafka, against the Stripe sandbox: a paid card
invoice credited in full is refunded once at Stripe, although the seller sends its credit-note
request three times with the same Idempotency-Key, Stripe's answer to the refund is lost, and
every refund webhook is delivered again."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
import stripe

from billing_events import Money, PeriodClosed, RatedLine, account_id, new_event
from billing_events.topics import PAYMENTS
from billing_runtime.testing import eventually, migrate, publish_events, read_events, serve, serve_on_port
from invoicing.config import Settings as InvoicingSettings
from invoicing.invoice.service import invoice_id_for
from invoicing.main import build as build_invoicing
from payments.config import Settings as PaymentsSettings
from payments.main import build as build_payments
from provider_sandboxes import SandboxServer, stripe_signature

pytestmark = pytest.mark.asyncio(loop_scope="module")
START, END = date(2026, 10, 1), date(2026, 10, 31)


@dataclass
class Services:
    invoicing: httpx.AsyncClient
    payments: httpx.AsyncClient
    payments_url: str
    stripe: SandboxServer


@pytest.fixture(scope="module")
def migrated(database_url: str) -> str:
    return migrate(database_url, "invoicing", "payments")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(migrated: str, kafka_bootstrap: str, stripe_sandbox: SandboxServer) -> AsyncIterator[Services]:
    database_url = migrated
    payments_settings = PaymentsSettings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        stripe_api_base=stripe_sandbox.url,
        provider_timeout_seconds=1.5,
        collector_interval_seconds=0.1,
        reconcile_after_seconds=0.5,
    )
    async with (
        serve_on_port(build_payments(payments_settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30.0) as payments,
        serve(build_invoicing(InvoicingSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap))) as invoicing,
    ):
        yield Services(invoicing, payments, url, stripe_sandbox)


async def card_on_file(s: Services, tenant: str, buyer: str) -> tuple[stripe.StripeClient, str]:
    """The seller's own Stripe account with a webhook to payments, and the buyer's saved card."""
    headers = {"X-Tenant-Id": tenant}
    api_key = f"sk_test_{tenant}"
    sc = stripe.StripeClient(api_key, base_addresses={"api": s.stripe.url}, max_network_retries=0)
    endpoint = await asyncio.to_thread(sc.v1.webhook_endpoints.create, {"url": f"{s.payments_url}/v1/webhooks/stripe/{tenant}", "enabled_events": ["*"]})
    assert (await s.payments.put("/v1/providers/stripe", headers=headers, json={"api_key": api_key, "webhook_secret": endpoint.secret})).status_code == 200
    r = await s.payments.post(f"/v1/accounts/{buyer}/payment-methods", headers=headers, json={"id": "card-1", "type": "card"})
    assert r.status_code == 201, r.text
    await asyncio.to_thread(sc.v1.setup_intents.confirm, r.json()["client_secret"].split("_secret_")[0], {"payment_method": "pm_card_visa"})

    async def active() -> bool:
        methods = (await s.payments.get(f"/v1/accounts/{buyer}/payment-methods", headers=headers)).json()["items"]
        return any(m["status"] == "active" for m in methods)

    await eventually(active)
    return sc, str(endpoint.secret)


async def close_period(kafka_bootstrap: str, tenant: str, buyer: str, amount: str) -> None:
    line = RatedLine(
        line_id="l1",
        product_code="USR-SUP",
        description="User support",
        service_period_start=START,
        service_period_end=END,
        quantity=Decimal(1),
        unit_price=Money.of(amount, "USD"),
        amount=Money.of(amount, "USD"),
        quantity_rule="contracted",
    )
    closed = PeriodClosed(
        tier="retail",
        bill_run_id=f"run-{tenant}",
        seller_id=tenant,
        buyer_account_id=buyer,
        period_start=START,
        period_end=END,
        currency="USD",
        lines=[line],
    )
    await publish_events(kafka_bootstrap, new_event(closed, source="rating", tenant=tenant, event_id=str(uuid.uuid4())))


async def test_a_paid_card_invoice_credited_in_full_is_refunded_once(services: Services, kafka_bootstrap: str) -> None:
    s = services
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    headers = {"X-Tenant-Id": tenant}
    buyer = account_id(tenant, "c-1")
    # A seller outside the EU and the UK: the invoice is outside the scope of VAT, total = net.
    seller = {"name": "Northwind IT", "country": "US", "invoice_prefix": "NW", "due_rule": {"net_days": 14}}
    assert (await s.invoicing.put("/v1/seller", headers=headers, json=seller)).status_code == 200
    sc, secret = await card_on_file(s, tenant, buyer)
    await close_period(kafka_bootstrap, tenant, buyer, "1516.25")
    invoice_id = invoice_id_for(tenant, buyer, START, END)

    async def invoice() -> dict[str, Any]:
        r = await s.invoicing.get(f"/v1/invoices/{invoice_id}", headers=headers)
        return dict(r.json()) if r.status_code == 200 else {}

    async def paid() -> bool:
        return (await invoice()).get("status") == "paid"

    await eventually(paid)  # issued, charged on issue by card, and the payment applied by invoicing

    # Stripe makes the refund but its answer is lost; the seller sends its request three times at once.
    fault = {"method": "POST", "path_prefix": "/v1/refunds", "mode": "error_after_commit", "times": 1}
    assert httpx.post(f"{s.stripe.url}/_sandbox/faults", json=fault).status_code == 201
    body = {"reason": "Order cancelled", "refund_to": "original_method"}

    def send() -> Awaitable[httpx.Response]:
        return s.invoicing.post(f"/v1/invoices/{invoice_id}/credit-notes", headers={**headers, "Idempotency-Key": "cancel-1"}, json=body)

    at_once = await asyncio.gather(send(), send(), send())
    # While the first runs, the others are told to retry (409 idempotency_key_in_flight, Retry-After); the retry replays it.
    assert sorted(a.status_code for a in at_once) in ([201, 201, 201], [201, 201, 409], [201, 409, 409])
    assert {a.json()["code"] for a in at_once if a.status_code == 409} <= {"idempotency_key_in_flight"}
    retried = await send()
    assert (retried.status_code, retried.headers.get("Idempotent-Replayed")) == (201, "true")
    assert {a.json()["id"] for a in [*at_once, retried] if a.status_code == 201} == {retried.json()["id"]}
    note = retried.json()
    assert (note["total"], note["amount_to_return"]) == ("-1516.25", "1516.25")

    async def refunded() -> bool:
        return (await invoice()).get("amount_paid") == "0.00"

    await eventually(refunded)  # PaymentRefunded applied by invoicing: the money paid is back with the buyer
    after = await invoice()
    assert (after["status"], after["credited_total"], after["open_amount"]) == ("paid", "1516.25", "0.00")

    url = f"{s.payments_url}/v1/webhooks/stripe/{tenant}"
    for sent in [e for e in (await asyncio.to_thread(sc.v1.events.list, {"limit": 100})).data if e.type.startswith("refund.")]:
        raw = json.dumps(sent.to_dict()).encode()
        assert (await s.payments.post(url, content=raw, headers={"Stripe-Signature": stripe_signature(raw, secret)})).json()["effect"] == "duplicate"

    intents = (await asyncio.to_thread(sc.v1.payment_intents.list, {"limit": 100})).data
    assert [i.amount for i in intents] == [151625]
    refunds = (await asyncio.to_thread(sc.v1.refunds.list, {"payment_intent": intents[0].id})).data
    assert [(r.amount, r.currency) for r in refunds] == [(151625, "usd")]
    events = await read_events(
        kafka_bootstrap,
        PAYMENTS.name,
        until=lambda seen: len(seen) >= 1,
        match=lambda e: e.tenant == tenant and e.type == "billing.payment.refunded.v1",
    )
    assert (events[0].data.credit_note_id, events[0].data.credit_note_number, events[0].data.provider_ref) == (note["id"], note["number"], refunds[0].id)
    listed = (await s.payments.get(f"/v1/invoices/{invoice_id}/attempts", headers=headers)).json()["refunds"]
    assert [(r["status"], r["amount"], r["credit_note_id"]) for r in listed] == [("succeeded", "1516.25", note["id"])]
