"""Suspension and reinstatement of accounts, and the hierarchy they respect.

- A customer's suspension is between the customer and its seller (the partner): it never
  touches the partner's own standing with the distributor.
- A partner suspended by the distributor may take its customers' service with it, when the
  distributor's policy says `cascade_to_customers`: each customer gets a suspension with
  `cascaded_from` = the partner's account, lifted when the partner is reinstated.
- An account is suspended while it has any active suspension with that seller. AccountSuspended
  is emitted when the first one starts, AccountReinstated when the last one is lifted, each with
  an id derived from the suspension, so a replay emits nothing new.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import AccountReinstated, AccountSuspended, CustomerUpserted, account_id, derived_event_id
from billing_runtime.api import DISTRIBUTOR
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from dunning.account import repository as repo
from dunning.policy.service import policy_of

tracer = trace.get_tracer(__name__)

SUSPENSIONS = Counter("billing_dunning_suspensions_total", "Accounts suspended, own dunning or cascaded from the partner", ["kind"])
start_at_zero(SUSPENSIONS, ("own", "cascaded"))
REINSTATEMENTS = Counter("billing_dunning_reinstatements_total", "Accounts reinstated")

# Fixed: changing it would give every suspension a new id (and its events new ids).
_NAMESPACE = uuid.UUID("8d3f7b0e-1a2c-5e4d-9f60-3b7a1c2d4e5f")


def suspension_id(case_id: str, account: str) -> str:
    """A case suspends an account at most once (its own buyer, or each customer by cascade)."""
    return str(uuid.uuid5(_NAMESPACE, f"suspension:{case_id}:{account}"))


def partner_account_id(partner: str) -> str:
    """The partner's own billing account, as the distributor's buyer."""
    return account_id(DISTRIBUTOR, partner)


async def learn_partner(session: AsyncSession, partner: str) -> None:
    if partner != DISTRIBUTOR:
        await repo.record_partner(session, partner, partner_account_id(partner))


async def link_customer(runtime: ServiceRuntime, session: AsyncSession, tenant: str, customer_account_id: str, today: date) -> None:
    """Remember that `customer_account_id` is a customer of the partner `tenant`. A customer that
    appears while its partner is suspended by a cascading distributor follows its partner."""
    await link_customers(runtime, session, tenant, [customer_account_id], today)


async def link_customers(runtime: ServiceRuntime, session: AsyncSession, tenant: str, customer_account_ids: list[str], today: date) -> None:
    """`link_customer` for a batch of the partner's customers: one insert for all of them, and the
    partner's suspension looked at only when one of them is new."""
    if tenant == DISTRIBUTOR or not customer_account_ids:
        return
    await learn_partner(session, tenant)
    new = await repo.link_customers(session, customer_account_ids, tenant)
    if not new:
        return
    partner_account = partner_account_id(tenant)
    # The partner's lock first (the order every cascade takes), so its reinstatement cannot slip between.
    await repo.lock_account(session, DISTRIBUTOR, partner_account)
    own = [s for s in await repo.active_suspensions(session, DISTRIBUTOR, partner_account) if s.cascaded_from is None]
    if own and (await policy_of(session, DISTRIBUTOR)).cascade_to_customers:
        for customer_account_id in new:
            await suspend(
                runtime,
                session,
                tenant=tenant,
                account=customer_account_id,
                seller_id=partner_account,
                case_id=own[0].case_id,
                on=today,
                cascade=False,
                cascaded_from=partner_account,
            )


async def apply_customers(runtime: ServiceRuntime, session: AsyncSession, customers: list[tuple[str, CustomerUpserted]]) -> None:
    """Link a batch of (event tenant, customer) to their partners (the customer's `partner_id`, else
    the event's tenant): one link insert per partner."""
    by_partner: dict[str, list[str]] = {}
    for event_tenant, customer in customers:
        by_partner.setdefault(customer.partner_id or event_tenant, []).append(customer.account_id)
    for partner, account_ids in by_partner.items():
        await link_customers(runtime, session, partner, account_ids, runtime.clock.today())


async def suspend(
    runtime: ServiceRuntime,
    session: AsyncSession,
    *,
    tenant: str,
    account: str,
    seller_id: str,
    case_id: str,
    on: date,
    cascade: bool,
    cascaded_from: str | None = None,
) -> bool:
    """Suspend `account` with the seller `tenant` for `case_id`; True if it was not suspended
    before. With `cascade` (the distributor's policy), the partner's customers follow."""
    with tracer.start_as_current_span("dunning.suspend_account", attributes={"billing.account_id": account, "billing.cascaded": cascaded_from is not None}):
        await repo.lock_account(session, tenant, account)
        was_suspended = bool(await repo.active_suspensions(session, tenant, account))
        sid = suspension_id(case_id, account)
        row = {
            "suspension_id": sid,
            "tenant": tenant,
            "account_id": account,
            "seller_id": seller_id,
            "case_id": case_id,
            "cascaded_from": cascaded_from,
            "suspended_on": on,
        }
        inserted = await repo.insert_suspension(session, row)
        started = inserted and not was_suspended
        if started:
            data = AccountSuspended(account_id=account, seller_id=seller_id, case_id=case_id, suspended_on=on, cascaded_from=cascaded_from)
            await runtime.outbox.add(session, runtime.event(data, tenant=tenant, event_id=derived_event_id("account_suspended", sid), subject=account))
            SUSPENSIONS.labels("cascaded" if cascaded_from else "own").inc()
        if inserted and cascade and tenant == DISTRIBUTOR and cascaded_from is None:
            await _cascade(runtime, session, account, case_id, on)
        return started


async def _cascade(runtime: ServiceRuntime, session: AsyncSession, partner_account: str, case_id: str, on: date) -> None:
    partner = await repo.partner_of_account(session, partner_account)
    if partner is None:
        return  # a buyer of the distributor that is no partner we know: it has no customers here
    for customer in await repo.customers_of(session, partner):
        await suspend(
            runtime, session, tenant=partner, account=customer, seller_id=partner_account, case_id=case_id, on=on, cascade=False, cascaded_from=partner_account
        )


async def _lift(runtime: ServiceRuntime, session: AsyncSession, suspension: Any, on: date) -> bool:
    """Lift one suspension; reinstate the account if it was the last. True if reinstated."""
    if not await repo.lift(session, suspension.suspension_id, on):
        return False
    if await repo.active_suspensions(session, suspension.tenant, suspension.account_id):
        return False
    data = AccountReinstated(account_id=suspension.account_id, seller_id=suspension.seller_id, case_id=suspension.case_id, reinstated_on=on)
    event_id = derived_event_id("account_reinstated", suspension.suspension_id)
    await runtime.outbox.add(session, runtime.event(data, tenant=suspension.tenant, event_id=event_id, subject=suspension.account_id))
    REINSTATEMENTS.inc()
    return True


async def case_closed(runtime: ServiceRuntime, session: AsyncSession, *, tenant: str, account: str, case_id: str, on: date) -> bool:
    """The case that suspended `account` is paid (or credited): lift its suspension unless another
    open case of the account has reached its suspend step too; then lift what cascaded from it.
    True if the account was reinstated."""
    with tracer.start_as_current_span("dunning.reinstate_account", attributes={"billing.account_id": account, "billing.case_id": case_id}):
        await repo.lock_account(session, tenant, account)
        reinstated = False
        for suspension in await repo.active_suspensions(session, tenant, account):
            if suspension.cascaded_from is not None:
                continue
            other = await repo.other_suspending_case(session, tenant, account, case_id)
            if other is not None:
                await repo.repoint(session, suspension.suspension_id, other)
                return False
            reinstated = await _lift(runtime, session, suspension, on)
            if reinstated and tenant == DISTRIBUTOR:
                for cascaded in await repo.cascaded_from(session, account):
                    await repo.lock_account(session, cascaded.tenant, cascaded.account_id)
                    await _lift(runtime, session, cascaded, on)
        return reinstated


async def suspension_of(session: AsyncSession, tenant: str, account: str) -> Any | None:
    """The account's earliest active suspension with the seller, if it is suspended."""
    active = await repo.active_suspensions(session, tenant, account)
    return active[0] if active else None
