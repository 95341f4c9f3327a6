"""When a subscription bills: its orders, changes and cancellation made effective by the billing
policy (BILLING-RULES §1 change cut-off, §3 first period, commitment, notice, vendor cut-off).
Pure; the dates computed here are the ones the subscription API shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal

from rating.business_days import BusinessCalendar
from rating.period import Period, local_day
from rating.policy import BillingPolicy, FirstPeriod


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


def _after_cutoff(requested_on: date, asked_for: date, policy: BillingPolicy, calendar: BusinessCalendar) -> date:
    """Orders, changes and cancellations received in the last K business days of a period take
    effect from the next period (BILLING-RULES §1, seed 001 "last 3 business days")."""
    received_in = Period.containing(requested_on)
    window = calendar.last_business_days_start(received_in.end, policy.change_cutoff_business_days)
    if window is not None and requested_on >= window and asked_for <= received_in.end:
        return received_in.end + timedelta(days=1)
    return asked_for


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    last = Period.of_month(year, month).end.day
    return date(year, month, min(day.day, last))


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
    starts_on = _after_cutoff(ordered_on, start_on, policy, calendar) if start_on >= ordered_on else start_on
    if policy.first_period == FirstPeriod.NEXT_PERIOD:
        # Seed 001: "billed in full the month after the order submission date".
        billing_starts_on = Period.containing(max(ordered_on, starts_on)).next().start
    else:
        billing_starts_on = starts_on
    steps = [Step(starts_on, ordered_at, quantity, order_id, ordered_on, start_on)]
    cancellation: Change | None = None
    for change in changes:
        requested_on = local_day(change.requested_at, tz)
        if change.quantity is None:
            if cancellation is None or (change.requested_at, change.order_id) < (cancellation.requested_at, cancellation.order_id):
                cancellation = change
            continue
        effective = _after_cutoff(requested_on, change.effective_on, policy, calendar)
        steps.append(Step(effective, change.requested_at, change.quantity, change.order_id, requested_on, change.effective_on))
    steps.sort(key=lambda s: (s.effective_on, s.requested_at, s.order_id))

    commitment_ends_on = add_months(billing_starts_on, policy.commitment_months) - timedelta(days=1) if policy.commitment_months else None
    ends_on = cancel_requested_on = None
    if cancellation is not None:
        cancel_requested_on = local_day(cancellation.requested_at, tz)
        ends_on = max(cancellation.effective_on, calendar.add_business_days(cancel_requested_on, policy.notice_business_days))
        ends_on = max(ends_on, _after_cutoff(cancel_requested_on, ends_on, policy, calendar))
        if policy.vendor_cutoff_day is not None and cancel_requested_on.day > policy.vendor_cutoff_day:
            # Seed 001 (Datto): notice after day D of the month bills "an additional month of
            # service": one more full period after the one the cancellation takes effect in.
            ends_on = Period.containing(ends_on).next().end
        if commitment_ends_on is not None:
            ends_on = max(ends_on, commitment_ends_on)
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
