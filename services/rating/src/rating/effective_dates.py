"""When an order, a change or a cancellation takes effect under the billing policy, one function
per rule (BILLING-RULES §1 change cut-off; §3 first period, commitment, notice, vendor cut-off).
Pure; `schedule.schedule` applies them to a subscription's order and changes. (Not to be confused
with `billrun/scheduler.py`, which decides when a period is closed.)
"""

from __future__ import annotations

from datetime import date, timedelta

from rating.business_days import BusinessCalendar
from rating.period import Period
from rating.policy import BillingPolicy


def change_cutoff(requested_on: date, asked_for: date, policy: BillingPolicy, calendar: BusinessCalendar) -> date:
    """`change_cutoff_business_days`: orders, changes and cancellations received in the last K
    business days of a period, for a date in it, take effect from the next period (seed 001
    "last 3 business days")."""
    received_in = Period.containing(requested_on)
    window = calendar.last_business_days_start(received_in.end, policy.change_cutoff_business_days)
    if window is not None and requested_on >= window and asked_for <= received_in.end:
        return received_in.end + timedelta(days=1)
    return asked_for


def service_start(ordered_on: date, start_on: date, policy: BillingPolicy, calendar: BusinessCalendar) -> date:
    """The start of service: the asked-for start after the change cut-off (a backdated start stands)."""
    return change_cutoff(ordered_on, start_on, policy, calendar) if start_on >= ordered_on else start_on


def first_billed_day(ordered_on: date, starts_on: date, policy: BillingPolicy) -> date:
    """`first_period`: `order_period` bills from the start of service; `next_period` from the
    month after the order's (or start's) month (seed 001: "billed in full the month after the
    order submission date")."""
    if policy.first_period == "next_period":
        return Period.containing(max(ordered_on, starts_on)).next().start
    return starts_on


def commitment_end(billing_starts_on: date, policy: BillingPolicy) -> date | None:
    """`commitment_months`: the last day of the commitment, N months from the first billed day."""
    return add_months(billing_starts_on, policy.commitment_months) - timedelta(days=1) if policy.commitment_months else None


def notice_end(requested_on: date, asked_for: date, policy: BillingPolicy, calendar: BusinessCalendar) -> date:
    """`notice_business_days`: a cancellation ends at the later of the wished date and N business
    days after the request."""
    return max(asked_for, calendar.add_business_days(requested_on, policy.notice_business_days))


def vendor_cutoff(requested_on: date, ends_on: date, policy: BillingPolicy) -> date:
    """`vendor_cutoff_day`: a cancellation requested after day D of its month bills "an additional
    month of service" (seed 001, Datto): one more full period after the one it ends in."""
    if policy.vendor_cutoff_day is not None and requested_on.day > policy.vendor_cutoff_day:
        return Period.containing(ends_on).next().end
    return ends_on


def cancellation_end(requested_on: date, asked_for: date, policy: BillingPolicy, calendar: BusinessCalendar, commitment_ends_on: date | None) -> date:
    """The last day of service of a cancellation: notice, then the change cut-off, then the vendor
    cut-off, and never before the commitment ends."""
    ends_on = notice_end(requested_on, asked_for, policy, calendar)
    ends_on = max(ends_on, change_cutoff(requested_on, ends_on, policy, calendar))
    ends_on = vendor_cutoff(requested_on, ends_on, policy)
    return ends_on if commitment_ends_on is None else max(ends_on, commitment_ends_on)


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it is shorter."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    last = Period.of_month(year, month).end.day
    return date(year, month, min(day.day, last))
