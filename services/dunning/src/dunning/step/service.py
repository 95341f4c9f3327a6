"""The evaluation: each open, overdue case is held against its seller's policy and reaches the
steps whose day has come, each step once.

Once is the primary key of `case_step` (case, day, action): a step is recorded with its events
in one transaction, and a second evaluation (another replica, the loop and the API at once, a
retry after a crash) inserts nothing and emits nothing. The events' ids are derived from the
same key, so even a replayed outbox carries no second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import DunningStepReached, Money, PaymentRetryRequested, derived_event_id
from billing_runtime.api import DISTRIBUTOR
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from dunning.account import service as accounts
from dunning.case import repository as cases
from dunning.case.service import CaseStatus
from dunning.policy.schemas import Action
from dunning.policy.service import due_steps, policy_of
from dunning.step import repository as repo

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

STEPS_REACHED = Counter("billing_dunning_steps_reached_total", "Dunning steps reached, by action", ["action"])
start_at_zero(STEPS_REACHED, tuple(a.value for a in Action))
RETRIES_REQUESTED = Counter("billing_dunning_payment_retries_requested_total", "Payment retries requested by dunning")
EVALUATIONS = Counter("billing_dunning_evaluations_total", "Evaluation rounds, by trigger", ["trigger"])
OPEN_CASES = Gauge("billing_dunning_open_cases", "Open dunning cases by the last step reached (none: before the first step)", ["step"])


@dataclass(frozen=True)
class Reached:
    case_id: str
    invoice_id: str
    account_id: str
    step: int
    days_after_due: int
    action: str


async def evaluate_case(runtime: ServiceRuntime, session: AsyncSession, invoice_id: str, today: date) -> list[Reached]:
    """Bring one case up to the steps its days overdue call for (under the invoice lock)."""
    await cases.lock_invoice(session, invoice_id)
    case = await cases.case_of_invoice(session, invoice_id)
    if case is None or case.status != CaseStatus.OPEN or today <= case.due_on:
        return []
    days_overdue = (today - case.due_on).days
    policy = await policy_of(session, case.tenant)
    missing = due_steps(policy, days_overdue, await repo.reached(session, case.case_id))
    reached: list[Reached] = []
    for step in missing:
        row = {
            "case_id": case.case_id,
            "days_after_due": step.days_after_due,
            "action": step.action,
            "tenant": case.tenant,
            "step": step.step,
            "reached_on": today,
            "amount_overdue": case.amount_open,
            "currency": case.currency,
        }
        if not await repo.insert_step(session, row):
            continue
        key = (case.case_id, str(step.days_after_due), step.action)
        data = DunningStepReached(
            case_id=case.case_id,
            invoice_id=case.invoice_id,
            seller_id=case.seller_id,
            account_id=case.account_id,
            step=step.step,
            action=step.action,
            days_overdue=days_overdue,
            amount_overdue=Money.of(case.amount_open, case.currency),
            reached_on=today,
        )
        await runtime.outbox.add(session, runtime.event(data, tenant=case.tenant, event_id=derived_event_id("dunning_step", *key), subject=case.case_id))
        STEPS_REACHED.labels(step.action).inc()
        if step.action == Action.RETRY:
            attempt = await repo.count_action(session, case.case_id, Action.RETRY.value)
            retry = PaymentRetryRequested(
                case_id=case.case_id, invoice_id=case.invoice_id, seller_id=case.seller_id, account_id=case.account_id, attempt=attempt
            )
            await runtime.outbox.add(session, runtime.event(retry, tenant=case.tenant, event_id=derived_event_id("payment_retry", *key), subject=case.case_id))
            RETRIES_REQUESTED.inc()
        elif step.action == Action.SUSPEND:
            await accounts.suspend(
                runtime,
                session,
                tenant=case.tenant,
                account=case.account_id,
                seller_id=case.seller_id,
                case_id=case.case_id,
                on=today,
                cascade=policy.cascade_to_customers and case.tenant == DISTRIBUTOR,
            )
        reached.append(Reached(case.case_id, case.invoice_id, case.account_id, step.step, step.days_after_due, step.action))
    if reached:
        last = reached[-1]
        await cases.update_case(session, case.case_id, step=last.step, step_action=last.action, step_reached_on=today)
    return reached


async def evaluate_due(runtime: ServiceRuntime, today: date, *, tenant: str | None = None, trigger: str = "api", batch: int = 200) -> list[Reached]:
    """Evaluate every open overdue case (of one seller, or of all), each in its own transaction
    so that one case's trouble does not hold back the others."""
    EVALUATIONS.labels(trigger).inc()
    with tracer.start_as_current_span("dunning.evaluate", attributes={"billing.evaluated_on": today.isoformat(), "billing.trigger": trigger}):
        reached: list[Reached] = []
        after: str | None = None
        while True:
            async with runtime.sessions() as session:
                page = await repo.overdue_open_cases(session, today, tenant=tenant, after=after, limit=batch)
            for _case_id, invoice_id in page:
                async with runtime.transaction() as session:
                    reached.extend(await evaluate_case(runtime, session, invoice_id, today))
            if len(page) < batch:
                return reached
            after = page[-1][0]


async def refresh_open_cases(runtime: ServiceRuntime) -> None:
    """Set the open-cases gauge from the database (every replica reports the same totals; dashboards take max)."""
    async with runtime.sessions() as session:
        counts = await repo.open_cases_by_step(session)
    OPEN_CASES.clear()
    for step, count in counts.items():
        OPEN_CASES.labels(step).set(count)


def evaluation_round(runtime: ServiceRuntime) -> Callable[[], Awaitable[None]]:
    """The periodic round (`runtime.every`, each `DUNNING_EVALUATE_INTERVAL_SECONDS`): evaluates all
    open cases (the clock decides what day it is; stepping more often than daily is harmless, each
    step happens once) and refreshes the open-cases gauge. A failed round is logged and counted by
    the runtime and retried next round."""

    async def run() -> None:
        await evaluate_due(runtime, runtime.clock.today(), trigger="schedule")
        await refresh_open_cases(runtime)

    return run
