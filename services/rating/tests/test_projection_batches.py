"""Customers and orders applied a polled run at a time (one statement per run), as the consumer
gives them: the result is what applying them one by one in offset order leaves, and a replay
changes nothing. (An event naming another partner is the runtime's to refuse, before these handlers:
billing-runtime's test_batches, and test_bill_run_flow end to end.)"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from billing_events import CloudEvent, CustomerUpserted, EventData, SubscriptionOrdered, new_event
from billing_events.testing import make_customer
from billing_runtime.service import ServiceRuntime
from rating.subscription.consumers import BATCH_HANDLERS


def event(data: EventData, tenant: str) -> CloudEvent[Any]:
    return new_event(data, source="usage-ingest", tenant=tenant, event_id=str(uuid.uuid4()))


def customer(partner: str, external_id: str, name: str, revision: int) -> CustomerUpserted:
    # Account ids spelt `<partner>:<customer>`, so the expected rows below read as what they are.
    return make_customer(partner, external_id, name=name, billing_email=f"{external_id}@example.com", revision=revision, account_id=f"{partner}:{external_id}")


def order(partner: str, subscription: str, order_id: str, quantity: str) -> SubscriptionOrdered:
    return SubscriptionOrdered(
        subscription_id=subscription,
        order_id=order_id,
        account_id=f"{partner}:c1",
        partner_id=partner,
        product_code="SKU",
        quantity=Decimal(quantity),
        start_on=date(2026, 10, 1),
        ordered_at=datetime(2026, 9, 30, 9, tzinfo=UTC),
    )


async def apply(runtime: ServiceRuntime, model: type[EventData], events: list[CloudEvent[Any]]) -> None:
    async with runtime.transaction() as session:
        await BATCH_HANDLERS[model](runtime, session, events)


async def rows(runtime: ServiceRuntime, partner: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with runtime.transaction() as session:
        buyers = (
            await session.execute(text("SELECT account_id, name, revision FROM rating.buyer_account WHERE seller_id = :p ORDER BY account_id"), {"p": partner})
        ).all()
        subscriptions = (
            await session.execute(
                text("SELECT subscription_id, order_id, quantity FROM rating.subscription WHERE seller_id = :p ORDER BY subscription_id"), {"p": partner}
            )
        ).all()
    return [tuple(b) for b in buyers], [tuple(s) for s in subscriptions]


async def test_a_run_of_customers_and_orders_is_applied_as_one_by_one(runtime: ServiceRuntime) -> None:
    partner = f"p-{uuid.uuid4().hex[:8]}"
    customers = [
        event(customer(partner, "c1", "Contoso", 2), partner),
        event(customer(partner, "c1", "Contoso (old)", 1), partner),  # an older revision arriving late: changes nothing
        event(customer(partner, "c2", "Fabrikam", 1), partner),
        event(customer(partner, "c2", "Fabrikam (same revision)", 1), partner),  # the first of equal revisions stands
        event(customer(partner, "c1", "Contoso Ltd", 3), partner),
    ]
    await apply(runtime, CustomerUpserted, customers)
    orders = [event(order(partner, f"{partner}-s{i}", f"o{i}", str(i + 1)), partner) for i in range(3)]
    orders.append(event(order(partner, f"{partner}-s0", "o0-again", "9"), partner))  # the first order for a subscription stands
    await apply(runtime, SubscriptionOrdered, orders)
    expected_buyers = [(f"{partner}:c1", "Contoso Ltd", 3), (f"{partner}:c2", "Fabrikam", 1)]
    expected_subscriptions = [(f"{partner}-s{i}", f"o{i}", Decimal(i + 1)) for i in range(3)]
    assert await rows(runtime, partner) == (expected_buyers, expected_subscriptions)

    # A later run with an older revision and the same orders again (a replay): nothing changes;
    # a newer revision still wins.
    await apply(runtime, CustomerUpserted, [event(customer(partner, "c2", "Fabrikam (older)", 1), partner)])
    await apply(runtime, SubscriptionOrdered, orders)
    assert await rows(runtime, partner) == (expected_buyers, expected_subscriptions)
    await apply(runtime, CustomerUpserted, [event(customer(partner, "c2", "Fabrikam GmbH", 2), partner)])
    assert (await rows(runtime, partner))[0][1] == (f"{partner}:c2", "Fabrikam GmbH", 2)
