"""Unknown payment outcomes against the sandboxes' faults, with payment webhooks subscribed as
`billing demo` subscribes them (every event): a late answer, a 5xx after the charge, a dropped
webhook, webhooks out of order or twice. Each time: exactly one charge at the provider, one
payment recorded, the invoice in the right state, and no PaymentFailed unless the bank said so."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import stripe
from prometheus_client.parser import text_string_to_metric_families

from billing_events import PaymentRetryRequested, new_event
from billing_runtime.testing import publish_events, tenant_headers
from provider_sandboxes import SandboxServer

from .conftest import Live
from .test_collection import (
    attempts,
    buyer,
    events_after_marker,
    gocardless_buyer,
    invoice,
    of_type,
    save_card,
    setup_stripe,
    tenant_id,
)
from .test_payments_api import eventually, invoice_issued

pytestmark = pytest.mark.asyncio(loop_scope="module")

# payments gives up on a provider after 1.5 s here (PAYMENTS_PROVIDER_TIMEOUT_SECONDS, 20 s in
# production); the sandboxes answer 4 s late, as Stripe answering 25 s late does in production.
LATE = 4.0


@pytest.fixture(scope="module")
def live_settings() -> dict[str, Any]:
    # Undecided attempts are read back quickly, so a lost webhook shows within the test.
    return {"processing_check_seconds": 0.5, "reconcile_max_interval_seconds": 2.0}


def fault(server: SandboxServer, key: str, **spec: Any) -> None:
    """A sandbox fault for this seller's account only."""
    r = httpx.post(f"{server.url}/_sandbox/faults", json=spec, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text


async def metric(live: Live, name: str, **labels: str) -> float:
    """The value of one sample on payments' /metrics (0 when absent)."""
    text = (await live.client.get("/metrics/")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def statuses(listed: dict[str, Any]) -> list[str]:
    return [a["status"] for a in listed["items"]]


async def settled(live: Live, tenant: str, invoice_id: str, want: list[str]) -> dict[str, Any]:
    seen: list[Any] = []

    async def done() -> bool:
        seen[:] = [(a["status"], a["reason_code"]) for a in (await attempts(live, tenant, invoice_id))["items"]]
        return [status for status, _ in seen] == want

    try:
        await eventually(done, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"attempts {seen}, expected {want}") from exc
    return await attempts(live, tenant, invoice_id)


async def webhooks_delivered(server: SandboxServer, tenant: str) -> None:
    """Every webhook the sandbox sent this seller has been answered (or was dropped on purpose)."""

    async def answered() -> bool:
        mine = [d for d in httpx.get(f"{server.url}/_sandbox/deliveries").json() if d["url"].endswith(f"/{tenant}")]
        return all(d["fault"] == "drop_webhook" or (d["status"] is not None and d["status"] < 300) for d in mine)

    await eventually(answered)


async def events_until_marker(live: Live, kafka_bootstrap: str, tenant: str, invoice_id: str, server: SandboxServer) -> list[Any]:
    """The seller's payment events up to a marker payment recorded after every webhook was
    applied: a PaymentFailed emitted by any of them would come before it."""
    await webhooks_delivered(server, tenant)
    return await events_after_marker(live, kafka_bootstrap, tenant, invoice_id)


async def payments_of(live: Live, tenant: str, invoice_id: str) -> list[tuple[str, str, str]]:
    items = (await live.client.get(f"/v1/payments?invoice_id={invoice_id}", headers=tenant_headers(tenant))).json()["items"]
    return [(p["payment_id"], p["amount"], p["status"]) for p in items]


async def card_buyer(live: Live, tenant: str, card: str = "pm_card_visa", events: list[str] | None = None) -> tuple[stripe.StripeClient, str]:
    sc, _ = await setup_stripe(live, tenant, events)
    await save_card(live, sc, tenant, "card-1", card)
    return sc, f"sk_test_{tenant}"


async def intents(sc: stripe.StripeClient) -> list[Any]:
    return list((await asyncio.to_thread(sc.v1.payment_intents.list, {"limit": 100})).data)


async def test_a_card_charge_answered_after_the_timeout_charges_once_and_pays_the_invoice(live: Live, kafka_bootstrap: str) -> None:
    """The headline: Stripe charges, then answers after payments gave up; its webhooks say
    `payment_intent.created` (requires_payment_method) and `payment_intent.succeeded`, and
    dunning's retry comes while the outcome is open. One charge, one payment, the invoice paid,
    no PaymentFailed (so no "payment failed" email)."""
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant)
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="delay_after_commit", seconds=LATE)
    invoice_id = str(uuid.uuid4())
    issued = invoice_issued(tenant, invoice_id, "CL-0101", total="163.59", currency="EUR")
    await publish_events(kafka_bootstrap, issued)

    async def attempt_written() -> bool:
        return bool((await attempts(live, tenant, invoice_id))["items"])

    await eventually(attempt_written)
    retry = PaymentRetryRequested(case_id="case-1", invoice_id=invoice_id, seller_id=issued.data.seller.account_id, account_id=buyer(tenant), attempt=1)
    await publish_events(kafka_bootstrap, new_event(retry, source="dunning", tenant=tenant, event_id=str(uuid.uuid4())))

    listed = await settled(live, tenant, invoice_id, ["succeeded", "canceled"])
    assert listed["items"][1]["reason_code"] == "nothing_open"  # dunning's retry: nothing left to charge
    charged = await intents(sc)
    assert [(i.status, i.amount) for i in charged] == [("succeeded", 16359)]
    assert listed["items"][0]["provider_ref"] == charged[0].id
    assert await payments_of(live, tenant, invoice_id) == [(f"{invoice_id}:1", "163.59", "succeeded")]
    assert (await invoice(live, tenant, invoice_id))["amount_open"] == "0.00"
    events = await events_until_marker(live, kafka_bootstrap, tenant, invoice_id, live.stripe)
    assert of_type(events, "payment.failed") == []
    assert [e.data.payment_id for e in of_type(events, "payment.succeeded")] == [f"{invoice_id}:1", "marker"]


async def test_a_5xx_after_the_charge_and_the_success_webhook_delivered_twice(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant)
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="error_after_commit")
    fault(live.stripe, key, mode="duplicate_webhook", event_type="payment_intent.succeeded")
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0102", total="50.00", currency="EUR"))

    await settled(live, tenant, invoice_id, ["succeeded"])
    assert [i.status for i in await intents(sc)] == ["succeeded"]
    assert await payments_of(live, tenant, invoice_id) == [(f"{invoice_id}:1", "50.00", "succeeded")]
    events = await events_until_marker(live, kafka_bootstrap, tenant, invoice_id, live.stripe)
    assert of_type(events, "payment.failed") == []
    assert [e.data.payment_id for e in of_type(events, "payment.succeeded")] == [f"{invoice_id}:1", "marker"]


async def test_a_charge_still_in_flight_when_payments_asks_again_is_made_once(live: Live, kafka_bootstrap: str) -> None:
    """Stripe starts on the charge only after payments gave up: asking finds nothing yet, and
    sending again under the same key meets the request still in progress (409), which is no
    answer either. The charge lands once."""
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant)
    unanswered = {"provider": "stripe", "operation": "reconcile", "result": "unavailable"}
    before = await metric(live, "billing_payment_provider_calls_total", **unanswered)
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="delay_before_commit", seconds=2 * LATE)
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0107", total="61.00", currency="EUR"))

    await settled(live, tenant, invoice_id, ["succeeded"])
    assert [(i.status, i.amount) for i in await intents(sc)] == [("succeeded", 6100)]
    assert await payments_of(live, tenant, invoice_id) == [(f"{invoice_id}:1", "61.00", "succeeded")]
    # The repeat met the request in progress (409) and was taken as no answer, not as a failure.
    assert await metric(live, "billing_payment_provider_calls_total", **unanswered) > before


async def test_a_dropped_success_webhook_after_a_late_answer_is_found_by_the_reconciler(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant)
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="delay_after_commit", seconds=LATE)
    fault(live.stripe, key, mode="drop_webhook", event_type="payment_intent.succeeded")
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0103", total="75.00", currency="EUR"))

    await settled(live, tenant, invoice_id, ["succeeded"])
    assert [i.status for i in await intents(sc)] == ["succeeded"]
    assert (await invoice(live, tenant, invoice_id))["amount_open"] == "0.00"
    dropped = [d for d in httpx.get(f"{live.stripe.url}/_sandbox/deliveries").json() if d["url"].endswith(tenant) and d["fault"]]
    assert len(dropped) == 1  # the success was only ever learnt by asking Stripe


async def test_success_webhooks_out_of_order_after_a_lost_answer(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant)
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="error_after_commit")
    # payment_intent.succeeded arrives first, payment_intent.created (requires_payment_method) after it.
    fault(live.stripe, key, mode="reorder_webhooks", event_type="payment_intent.", times=2)
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0104", total="20.00", currency="EUR"))

    await settled(live, tenant, invoice_id, ["succeeded"])
    await webhooks_delivered(live.stripe, tenant)
    assert statuses(await attempts(live, tenant, invoice_id)) == ["succeeded"]
    assert [i.status for i in await intents(sc)] == ["succeeded"]
    assert await payments_of(live, tenant, invoice_id) == [(f"{invoice_id}:1", "20.00", "succeeded")]


async def test_a_decline_whose_answer_is_lost_fails_once_whatever_the_webhook_order(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant, "pm_card_chargeDeclinedInsufficientFunds")
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="error_after_commit")
    fault(live.stripe, key, mode="reorder_webhooks", event_type="payment_intent.", times=2)
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0105", total="30.00", currency="EUR"))

    listed = await settled(live, tenant, invoice_id, ["failed"])
    assert listed["items"][0]["reason_code"] == "insufficient_funds"
    events = await events_until_marker(live, kafka_bootstrap, tenant, invoice_id, live.stripe)
    assert [e.data.reason_code for e in of_type(events, "payment.failed")] == ["insufficient_funds"]
    assert statuses(await attempts(live, tenant, invoice_id)) == ["failed"]
    assert len(await intents(sc)) == 1


@pytest.mark.parametrize(("surplus", "refunded", "credit"), [("refund", ["1200"], []), ("credit", [], [{"amount": "12.00", "currency": "EUR"}])])
async def test_a_second_success_for_a_paid_invoice_is_refunded_or_credited_as_the_seller_chose(
    live: Live, kafka_bootstrap: str, surplus: str, refunded: list[str], credit: list[dict[str, str]]
) -> None:
    """The card was charged but Stripe cannot be asked; meanwhile the buyer pays by bank
    transfer. When Stripe answers again the card's success still wins, and its surplus is given
    back (or kept as credit), shown on the attempt and counted."""
    tenant = tenant_id()
    sc, key = await card_buyer(live, tenant, events=["setup_intent.succeeded"])
    if surplus == "credit":
        r = await live.client.put("/v1/collection-settings", headers=tenant_headers(tenant), json={"surplus": "credit"})
        assert r.json()["surplus"] == "credit"
    assert (await live.client.get("/v1/collection-settings", headers=tenant_headers(tenant))).json()["surplus"] == surplus
    fault(live.stripe, key, method="POST", path_prefix="/v1/payment_intents", mode="error_after_commit")
    fault(live.stripe, key, method="GET", path_prefix="/v1/payment_intents", mode="error_before", times=100000)
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "CL-0106", total="12.00", currency="EUR"))
    await settled(live, tenant, invoice_id, ["unknown"])

    async def counted() -> bool:
        return await metric(live, "billing_payment_attempts_open", provider="stripe", status="unknown") >= 1

    await eventually(counted)
    surpluses_before = await metric(live, "billing_payment_surplus_total", provider="stripe", action=surplus)
    r = await live.client.post(
        "/v1/payments",
        headers=tenant_headers(tenant),
        json={
            "id": "bank-1",
            "invoice_id": invoice_id,
            "amount": "12.00",
            "currency": "EUR",
            "received_on": "2026-11-21",
        },
    )
    assert r.status_code == 201, r.text
    httpx.delete(f"{live.stripe.url}/_sandbox/faults", headers={"Authorization": f"Bearer {key}"})

    listed = await settled(live, tenant, invoice_id, ["succeeded"])
    assert (listed["items"][0]["surplus"], listed["items"][0]["surplus_action"]) == ("12.00", surplus)
    if surplus == "refund":

        async def refund_done() -> bool:
            return [r["status"] for r in (await attempts(live, tenant, invoice_id))["refunds"]] == ["succeeded"]

        await eventually(refund_done)
    charged = await intents(sc)
    assert len(charged) == 1
    stripe_refunds = (await asyncio.to_thread(sc.v1.refunds.list, {"payment_intent": charged[0].id})).data
    assert [str(r.amount) for r in stripe_refunds] == refunded
    shown = await invoice(live, tenant, invoice_id)
    assert (shown["amount_received"], shown["amount_open"]) == (("12.00", "0.00") if surplus == "refund" else ("24.00", "0.00"))
    assert (await live.client.get(f"/v1/accounts/{buyer(tenant)}/credit", headers=tenant_headers(tenant))).json()["credit"] == credit
    assert await metric(live, "billing_payment_surplus_total", provider="stripe", action=surplus) == surpluses_before + 1
    if surplus == "refund":
        # Refunded by the refund module, as a credit note's refunds are, but for no credit note.
        refunds = (await attempts(live, tenant, invoice_id))["refunds"]
        shape = [(r["refund_id"], r["credit_note_id"], r["provider"], r["method"], r["refund_to"], r["amount"]) for r in refunds]
        assert shape == [(f"surplus:{invoice_id}:1", None, "stripe", "card", "original_method", "12.00")]
        events = await events_until_marker(live, kafka_bootstrap, tenant, invoice_id, live.stripe)
        told = [(e.data.refund_id, e.data.credit_note_id, str(e.data.amount.amount)) for e in of_type(events, "payment.refunded")]
        assert told == [(f"surplus:{invoice_id}:1", None, "12.00")]


async def test_collection_settings_refuse_what_they_do_not_know(live: Live) -> None:
    tenant = tenant_id()
    r = await live.client.put("/v1/collection-settings", headers=tenant_headers(tenant), json={"surplus": "keep"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert (await live.client.get("/v1/collection-settings", headers=tenant_headers(tenant))).json() == {"surplus": "refund", "updated_at": None}


async def test_a_direct_debit_created_late_a_retry_meanwhile_and_its_confirmation_webhook_dropped(live: Live, kafka_bootstrap: str) -> None:
    """A direct debit answered after the timeout, dunning's retry while it is undecided (it
    waits: no second debit), and GoCardless's `confirmed` webhook lost (the reconciler reads it)."""
    tenant = tenant_id()
    gc, token = await gocardless_buyer(live, tenant)
    fault(live.gocardless, token, method="POST", path_prefix="/payments", mode="delay_after_commit", seconds=LATE)
    fault(live.gocardless, token, mode="drop_webhook", event_type="payments.confirmed")
    invoice_id = str(uuid.uuid4())
    issued = invoice_issued(tenant, invoice_id, "AC-0101", total="99.90", currency="EUR")
    await publish_events(kafka_bootstrap, issued)

    listed = await settled(live, tenant, invoice_id, ["processing"])
    payment_id = listed["items"][0]["provider_ref"]
    retry = PaymentRetryRequested(case_id="case-1", invoice_id=invoice_id, seller_id=issued.data.seller.account_id, account_id=buyer(tenant), attempt=1)
    await publish_events(kafka_bootstrap, new_event(retry, source="dunning", tenant=tenant, event_id=str(uuid.uuid4())))
    await settled(live, tenant, invoice_id, ["processing", "pending"])
    assert [p.id for p in (await asyncio.to_thread(gc.payments.list)).records] == [payment_id]
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_confirmed", {"links": {"resource": payment_id}})
    await settled(live, tenant, invoice_id, ["succeeded", "canceled"])
    assert [p.id for p in (await asyncio.to_thread(gc.payments.list)).records] == [payment_id]
    assert await payments_of(live, tenant, invoice_id) == [(f"{invoice_id}:1", "99.90", "succeeded")]
    assert (await invoice(live, tenant, invoice_id))["amount_open"] == "0.00"


async def test_a_direct_debit_answered_5xx_then_its_webhooks_out_of_order_and_twice(live: Live, kafka_bootstrap: str) -> None:
    tenant = tenant_id()
    gc, token = await gocardless_buyer(live, tenant)
    fault(live.gocardless, token, method="POST", path_prefix="/payments", mode="error_after_commit")
    fault(live.gocardless, token, mode="duplicate_webhook", event_type="payments.created")
    invoice_id = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, invoice_id, "AC-0102", total="45.00", currency="EUR"))

    listed = await settled(live, tenant, invoice_id, ["processing"])
    payment_id = listed["items"][0]["provider_ref"]
    assert [p.id for p in (await asyncio.to_thread(gc.payments.list)).records] == [payment_id]
    fault(live.gocardless, token, mode="reorder_webhooks", event_type="payments.", times=2)  # confirmed before submitted
    await asyncio.to_thread(gc.scenario_simulators.run, "payment_confirmed", {"links": {"resource": payment_id}})
    await settled(live, tenant, invoice_id, ["succeeded"])
    events = await events_until_marker(live, kafka_bootstrap, tenant, invoice_id, live.gocardless)
    assert of_type(events, "payment.failed") == []
    assert [e.data.payment_id for e in of_type(events, "payment.succeeded")] == [f"{invoice_id}:1", "marker"]
    assert await payments_of(live, tenant, invoice_id) == [(f"{invoice_id}:1", "45.00", "succeeded"), ("marker", "0.01", "succeeded")]
