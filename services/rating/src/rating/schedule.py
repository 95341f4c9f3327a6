"""When a subscription bills: its orders, changes and cancellation made effective by the billing
policy's rules in `effective_dates.py` (BILLING-RULES §1 change cut-off, §3 first period,
commitment, notice, vendor cut-off). Pure; the dates computed here are the ones the subscription
API shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal

from rating.business_days import BusinessCalendar
from rating.effective_dates import cancellation_end, change_cutoff, commitment_end, first_billed_day, service_start
from rating.period import Period, local_day
from rating.policy import BillingPolicy


@dataclass(frozen=True)
class Change:
    """A quantity change (`quantity` set) or a cancellation (`quantity` None), as ordered."""

    order_id: str
    requested_at: datetime
    effective_on: date  # the date the partner asked for
    quantity: Decimal | None


@dataclass(frozen=True)
class Step:
    effective_on: date
    requested_at: datetime
    quantity: Decimal
    order_id: str
    requested_on: date
    asked_for: date


@dataclass(frozen=True)
class Schedule:
    subscription_id: str
    ordered_at: datetime
    ordered_on: date
    starts_on: date  # the service start after the change cut-off
    billing_starts_on: date  # after the first-period rule
    steps: tuple[Step, ...]  # the order and every quantity change, by effective date
    cancel_requested_on: date | None
    cancel_asked_for: date | None
    ends_on: date | None  # the last day of service, after notice, cut-offs and commitment
    commitment_ends_on: date | None

    @property
    def first_period(self) -> Period:
        return Period.containing(self.billing_starts_on)

    def quantity_on(self, day: date) -> Decimal:
        """The quantity in force on `day`: the latest step effective by then (the order's before it)."""
        if len(self.steps) == 1:  # never changed: the ordered quantity on every day
            return self.steps[0].quantity
        in_force = [s for s in self.steps if s.effective_on <= day]
        return max(in_force or self.steps[:1], key=lambda s: (s.effective_on, s.requested_at)).quantity

    def billed_in(self, period: Period) -> bool:
        """Active on some day of the period once billing has started."""
        return self.billing_starts_on <= period.end and (self.ends_on is None or self.ends_on >= period.start)

    def active_days(self, period: Period) -> tuple[date, date] | None:
        first = max(self.billing_starts_on, period.start)
        last = period.end if self.ends_on is None else min(self.ends_on, period.end)
        return (first, last) if first <= last else None

    def quantity_spans(self, first: date, last: date) -> list[tuple[date, date, Decimal]]:
        """[first, last] cut where the quantity changes: (from, to, quantity), both ends inclusive."""
        cuts = sorted({s.effective_on for s in self.steps if first < s.effective_on <= last})
        spans, start = [], first
        for cut in [*cuts, last + timedelta(days=1)]:
            spans.append((start, cut - timedelta(days=1), self.quantity_on(start)))
            start = cut
        return spans


def schedule(
    *,
    subscription_id: str,
    quantity: Decimal,
    start_on: date,
    ordered_at: datetime,
    order_id: str,
    changes: tuple[Change, ...],
    policy: BillingPolicy,
    calendar: BusinessCalendar,
    tz: tzinfo,
) -> Schedule:
    ordered_on = local_day(ordered_at, tz)
    starts_on = service_start(ordered_on, start_on, policy, calendar)
    billing_starts_on = first_billed_day(ordered_on, starts_on, policy)
    steps = [Step(starts_on, ordered_at, quantity, order_id, ordered_on, start_on)]
    cancellation: Change | None = None
    for change in changes:
        requested_on = local_day(change.requested_at, tz)
        if change.quantity is None:
            if cancellation is None or (change.requested_at, change.order_id) < (cancellation.requested_at, cancellation.order_id):
                cancellation = change
            continue
        effective = change_cutoff(requested_on, change.effective_on, policy, calendar)
        steps.append(Step(effective, change.requested_at, change.quantity, change.order_id, requested_on, change.effective_on))
    steps.sort(key=lambda s: (s.effective_on, s.requested_at, s.order_id))

    commitment_ends_on = commitment_end(billing_starts_on, policy)
    ends_on = cancel_requested_on = None
    if cancellation is not None:
        cancel_requested_on = local_day(cancellation.requested_at, tz)
        ends_on = cancellation_end(cancel_requested_on, cancellation.effective_on, policy, calendar, commitment_ends_on)
    return Schedule(
        subscription_id=subscription_id,
        ordered_at=ordered_at,
        ordered_on=ordered_on,
        starts_on=starts_on,
        billing_starts_on=billing_starts_on,
        steps=tuple(steps),
        cancel_requested_on=cancel_requested_on,
        cancel_asked_for=cancellation.effective_on if cancellation else None,
        ends_on=ends_on,
        commitment_ends_on=commitment_ends_on,
    )
