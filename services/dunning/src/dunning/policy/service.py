"""The policy rules: which steps a seller's overdue case goes through, and on which day.

A step is (days after the due date, action); steps are numbered 1..n in the order they fire
(by day; steps on the same day keep the order the seller gave). The default follows the
issue: +1 remind, +7 retry the payment and remind, +14 final notice, +21 suspend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.api import DISTRIBUTOR
from billing_runtime.errors import BillingError
from dunning.policy import repository as repo
from dunning.policy.schemas import Action, PolicyIn, PolicyOut, StepOut


@dataclass(frozen=True)
class Step:
    step: int
    days_after_due: int
    action: str


@dataclass(frozen=True)
class Policy:
    tenant: str
    steps: tuple[Step, ...]
    cascade_to_customers: bool
    configured: bool
    updated_at: datetime | None = None


DEFAULT_STEPS: tuple[tuple[int, Action], ...] = ((1, Action.REMIND), (7, Action.RETRY), (7, Action.REMIND), (14, Action.FINAL_NOTICE), (21, Action.SUSPEND))


class InvalidPolicy(BillingError):
    status_code = 422
    code = "invalid_dunning_policy"


def numbered(steps: list[tuple[int, str]]) -> tuple[Step, ...]:
    """The steps in firing order, numbered from 1. Sorting is stable: same-day steps keep their order."""
    ordered = sorted(steps, key=lambda s: s[0])
    return tuple(Step(i, days, action) for i, (days, action) in enumerate(ordered, start=1))


def validate(tenant: str, body: PolicyIn) -> list[tuple[int, Action]]:
    """The steps of a policy a seller may store, or InvalidPolicy with what to fix."""
    steps = [(s.days_after_due, s.action) for s in body.steps]
    if len(set(steps)) != len(steps):
        raise InvalidPolicy("the same action is listed twice on the same day", field="steps")
    if sum(1 for _, action in steps if action == Action.SUSPEND) > 1:
        raise InvalidPolicy("a policy suspends at most once", field="steps")
    if body.cascade_to_customers and tenant != DISTRIBUTOR:
        raise InvalidPolicy("only the distributor's policy can cascade a suspension to a partner's customers", field="cascade_to_customers")
    return steps


def default_policy(tenant: str) -> Policy:
    return Policy(tenant, numbered(list(DEFAULT_STEPS)), cascade_to_customers=False, configured=False)


def due_steps(policy: Policy, days_overdue: int, reached: set[tuple[int, str]]) -> list[Step]:
    """The steps a case `days_overdue` days past its due date should have reached and has not.
    A case evaluated late (the service was down, the invoice arrived late) catches up on every
    missed step at once, in order, each still once."""
    return [s for s in policy.steps if s.days_after_due <= days_overdue and (s.days_after_due, s.action) not in reached]


async def policy_of(session: AsyncSession, tenant: str) -> Policy:
    """The seller's policy, or the default while it has stored none."""
    row = await repo.get(session, tenant)
    if row is None:
        return default_policy(tenant)
    steps = numbered([(int(s["days_after_due"]), str(s["action"])) for s in row.steps])
    return Policy(tenant, steps, cascade_to_customers=row.cascade_to_customers, configured=True, updated_at=row.updated_at)


def policy_out(policy: Policy) -> PolicyOut:
    return PolicyOut(
        tenant=policy.tenant,
        steps=[StepOut(step=s.step, days_after_due=s.days_after_due, action=s.action) for s in policy.steps],
        cascade_to_customers=policy.cascade_to_customers,
        configured=policy.configured,
        updated_at=policy.updated_at,
    )


async def get_policy(session: AsyncSession, tenant: str) -> PolicyOut:
    return policy_out(await policy_of(session, tenant))


async def put_policy(session: AsyncSession, tenant: str, body: PolicyIn, at: datetime) -> PolicyOut:
    """Replace the seller's policy. It applies to every open case from the next evaluation on;
    steps a case has already reached stay reached (and are not repeated)."""
    steps = validate(tenant, body)
    await repo.put(session, tenant, [{"days_after_due": d, "action": a} for d, a in steps], body.cascade_to_customers, at)
    return await get_policy(session, tenant)
