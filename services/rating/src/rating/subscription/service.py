"""Projection rules: each event is stored as a fact keyed by the partner's own id, never
overwritten by an older one, so redelivery and replay change nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CustomerUpserted,
    QuantityObserved,
    SubscriptionCancelled,
    SubscriptionChanged,
    SubscriptionOrdered,
    UsageRecorded,
)
from billing_runtime.service import ServiceRuntime
from rating.billrun.service import subscription_terms
from rating.catalogue.service import price_book, seller_terms
from rating.errors import ProductNotFound, SubscriptionNotFound
from rating.period import Period
from rating.policy import PolicyIn
from rating.subscription import repository as repo
from rating.subscription.schemas import AccountSubscriptionOut, StepOut, SubscriptionOut

PROJECTED = Counter("billing_rating_projected_total", "Events projected into rating's state, by kind", ["kind"])
POLICY_OVERRIDES = Counter("billing_rating_policy_overrides_total", "Subscription policy overrides stored")


def _buyer_row(data: CustomerUpserted) -> dict[str, Any]:
    return {
        "seller_id": data.partner_id,
        "account_id": data.account_id,
        "external_id": data.external_id,
        "name": data.name,
        "currency": data.currency,
        "revision": data.revision,
    }


async def record_customers(session: AsyncSession, customers: Sequence[CustomerUpserted]) -> None:
    """Buyers of the partner, at their latest revision (an older revision changes nothing), a batch
    in one statement: of one account's revisions in the batch the highest stands (the first of
    equals, as when applied one by one)."""
    latest: dict[tuple[str, str], CustomerUpserted] = {}
    for data in customers:
        key = (data.partner_id, data.account_id)
        if key not in latest or data.revision > latest[key].revision:
            latest[key] = data
    await repo.upsert_buyers(session, [_buyer_row(data) for data in latest.values()])
    PROJECTED.labels("customer").inc(len(customers))


def _subscription_row(data: SubscriptionOrdered) -> dict[str, Any]:
    return {
        "seller_id": data.partner_id,
        "subscription_id": data.subscription_id,
        "order_id": data.order_id,
        "account_id": data.account_id,
        "product_code": data.product_code,
        "quantity": data.quantity,
        "start_on": data.start_on,
        "ordered_at": data.ordered_at,
        "setup_exempt": data.setup_exempt,
    }


async def record_orders(session: AsyncSession, orders: Sequence[SubscriptionOrdered]) -> None:
    """New subscriptions, a batch in one statement; the first order for a subscription id stands
    (stored before, or earlier in the batch)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for data in orders:
        rows.setdefault((data.partner_id, data.subscription_id), _subscription_row(data))
    await repo.insert_subscriptions(session, list(rows.values()))
    PROJECTED.labels("order").inc(len(orders))


async def record_change(session: AsyncSession, data: SubscriptionChanged) -> None:
    """A new quantity from `effective_on`."""
    await _insert_order_change(session, data, "quantity", data.quantity)
    PROJECTED.labels("change").inc()


async def record_cancellation(session: AsyncSession, data: SubscriptionCancelled) -> None:
    """The subscription ends on `effective_on` (that day's period still bills in full)."""
    await _insert_order_change(session, data, "cancellation", None)
    PROJECTED.labels("cancellation").inc()


async def _insert_order_change(session: AsyncSession, data: SubscriptionChanged | SubscriptionCancelled, kind: str, quantity: Decimal | None) -> None:
    """An order's change (`kind`) from `effective_on`, stored once per (seller, subscription, order)."""
    row = {
        "seller_id": data.partner_id,
        "subscription_id": data.subscription_id,
        "order_id": data.order_id,
        "account_id": data.account_id,
        "kind": kind,
        "quantity": quantity,
        "effective_on": data.effective_on,
        "requested_at": data.requested_at,
    }
    await repo.insert_once(session, repo.CHANGE, row, ("seller_id", "subscription_id", "order_id"))


async def record_usage(session: AsyncSession, records: Sequence[UsageRecorded]) -> None:
    """Usage as facts keyed by the partner's record id, a batch in one statement: a record id
    already stored (or earlier in the batch) keeps its first version, so a replay changes nothing."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for data in records:
        rows.setdefault(
            (data.partner_id, data.record_id),
            {
                "seller_id": data.partner_id,
                "record_id": data.record_id,
                "account_id": data.account_id,
                "product_code": data.product_code,
                "quantity": data.quantity,
                "occurred_at": data.occurred_at,
                "cost": data.cost.amount if data.cost is not None else None,
                "cost_currency": data.cost.currency if data.cost is not None else None,
            },
        )
    await repo.insert_usage(session, list(rows.values()))
    PROJECTED.labels("usage").inc(len(records))


async def refused_usage(session: AsyncSession, records: Sequence[UsageRecorded], distributor_id: str | None) -> dict[str, str]:
    """The records (by record id) of a batch that may not be applied: usage below zero for a
    product (the seller's, else the distributor's) whose policy takes no credits. Each seller's
    catalogue is read once per batch, and only if the batch has negative usage."""
    negative = [r for r in records if r.quantity < 0]
    if not negative:
        return {}
    credits: dict[str, set[str]] = {}
    for seller_id in {r.partner_id for r in negative}:
        book = await price_book(session, seller_id, distributor_id)
        credits[seller_id] = {code for code, product in book.products.items() if product.policy.allows_credits}
    return {
        r.record_id: f"usage {r.record_id!r} of {r.product_code!r} is negative and the product allows no credits"
        for r in negative
        if r.product_code not in credits[r.partner_id]
    }


async def record_observation(session: AsyncSession, data: QuantityObserved) -> None:
    row = {
        "seller_id": data.partner_id,
        "observation_id": data.observation_id,
        "account_id": data.account_id,
        "product_code": data.product_code,
        "observed_at": data.observed_at,
        "source": data.source,
        "quantity": data.quantity,
        "items": [item.model_dump() for item in data.items] if data.items is not None else None,
    }
    await repo.insert_once(session, repo.OBSERVATION, row, ("seller_id", "observation_id"))
    PROJECTED.labels("observation").inc()


async def override_policy(
    runtime: ServiceRuntime, session: AsyncSession, seller_id: str, distributor_id: str | None, subscription_id: str, body: PolicyIn
) -> None:
    """Store the subscription's overrides, checked against its product's policy first."""
    found = await repo.subscription(session, seller_id, subscription_id)
    if found is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id!r} of this seller (yet)")
    book = await price_book(session, seller_id, distributor_id)
    product = book.products.get(found.product_code)
    if product is None:
        raise ProductNotFound(f"subscription {subscription_id!r} is to {found.product_code!r}, which is in no catalogue", field="product_code")
    knobs = body.model_dump(exclude_none=True, mode="json")
    product.policy.overridden(knobs)
    if knobs.get("setup_product") and knobs["setup_product"] not in book.products:
        raise ProductNotFound(f"no setup product {knobs['setup_product']!r} in the catalogue", field="setup_product")
    await repo.upsert_policy(session, {"seller_id": seller_id, "subscription_id": subscription_id, "policy": knobs, "updated_at": runtime.clock.now()})
    POLICY_OVERRIDES.inc()


async def describe(session: AsyncSession, seller_id: str, distributor_id: str | None, subscription_id: str) -> SubscriptionOut:
    """The subscription with the dates its policy makes effective (orders, changes, cancellation)."""
    found = await repo.subscription(session, seller_id, subscription_id)
    if found is None:
        raise SubscriptionNotFound(f"no subscription {subscription_id!r} of this seller (yet)")
    book = await price_book(session, seller_id, distributor_id)
    terms = await seller_terms(session, seller_id)
    overrides = await repo.policies(session, seller_id, [subscription_id])
    (sub,) = subscription_terms([found], await repo.changes(session, seller_id, [subscription_id]), overrides, book, terms)
    plan = sub.schedule
    return SubscriptionOut(
        subscription_id=found.subscription_id,
        account_id=found.account_id,
        product_code=found.product_code,
        ordered_at=found.ordered_at,
        setup_exempt=found.setup_exempt,
        policy=sub.policy.as_json(),
        policy_overrides=overrides.get(subscription_id, {}),
        starts_on=plan.starts_on,
        billing_starts_on=plan.billing_starts_on,
        steps=[
            StepOut(order_id=s.order_id, quantity=s.quantity, requested_on=s.requested_on, asked_for=s.asked_for, effective_on=s.effective_on)
            for s in plan.steps
        ],
        cancel_requested_on=plan.cancel_requested_on,
        cancel_asked_for=plan.cancel_asked_for,
        commitment_ends_on=plan.commitment_ends_on,
        ends_on=plan.ends_on,
        last_billed_period=Period.containing(plan.ends_on).label if plan.ends_on is not None else None,
    )


TERMS = {"month": "monthly", "year": "annual"}


async def account_subscriptions(
    session: AsyncSession, seller_id: str, distributor_id: str | None, account_id: str, today: date
) -> list[AccountSubscriptionOut]:
    """The buyer's subscriptions with this seller: quantity in force today, monthly or annual
    term, and whether running, upcoming, ending or ended (from the same schedule a bill run uses)."""
    found = await repo.subscriptions(session, seller_id, date.max, account_id)
    if not found:
        return []
    ids = [f.subscription_id for f in found]
    book = await price_book(session, seller_id, distributor_id)
    terms = await seller_terms(session, seller_id)
    planned = subscription_terms(found, await repo.changes(session, seller_id, ids), await repo.policies(session, seller_id, ids), book, terms)
    out = []
    for sub in planned:
        plan, product = sub.schedule, book.products.get(sub.product_code)
        if plan.ends_on is not None and plan.ends_on < today:
            status = "ended"
        elif plan.starts_on > today:
            status = "upcoming"
        else:
            status = "ending" if plan.ends_on is not None else "active"
        out.append(
            AccountSubscriptionOut(
                subscription_id=sub.subscription_id,
                product_code=sub.product_code,
                product_name=product.name if product else None,
                quantity=plan.quantity_on(max(today, plan.starts_on)),
                unit=product.unit if product else None,
                term=TERMS.get(sub.policy.interval, sub.policy.interval),
                timing=sub.policy.timing,
                status=status,
                starts_on=plan.starts_on,
                ends_on=plan.ends_on,
                commitment_ends_on=plan.commitment_ends_on,
                as_of=today,
            )
        )
    return out
