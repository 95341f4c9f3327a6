"""Property tests (hypothesis): billed service periods never leave a gap or overlap whatever the
orders and changes; a prorated charge never exceeds the full one; every month length; seller time
zones with odd offsets; a record at 00:00:00 on the 1st lands in that month."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_events import RatedLine
from rating.billrun.rating import Buyer, Price, ProductInfo, Subscription, Usage, rate_period
from rating.business_days import BusinessCalendar
from rating.period import Period, local_midnight
from rating.policy import BillingPolicy, FirstPeriod, Proration, QuantityRule, Timing
from rating.pricing import parse_model
from rating.schedule import Change, schedule

BUYER = Buyer("acct", "USD")
UNIT = Decimal("20.60")
ZONES = ["UTC", "Pacific/Apia", "Australia/Lord_Howe", "Pacific/Kiritimati", "America/St_Johns", "Asia/Kathmandu", "Europe/Dublin"]


def price_of(code: str, period: Period, currency: str = "USD") -> Price:
    return Price(parse_model({"model": "per_unit", "unit_price": str(UNIT)}), "USD")


days = st.dates(min_value=date(2027, 1, 1), max_value=date(2028, 12, 31))


@st.composite
def orders(draw: st.DrawFn) -> tuple[Subscription, date]:
    """A subscription with any policy, quantity changes and perhaps a cancellation."""
    start = draw(days)
    policy = BillingPolicy(
        quantity_rule=QuantityRule.CONTRACTED,
        proration=draw(st.sampled_from(list(Proration))),
        timing=draw(st.sampled_from(list(Timing))),
        first_period=draw(st.sampled_from(list(FirstPeriod))),
        change_cutoff_business_days=draw(st.integers(0, 3)),
        notice_business_days=draw(st.integers(0, 30)),
        commitment_months=draw(st.integers(0, 12)),
        vendor_cutoff_day=draw(st.none() | st.integers(1, 28)),
    )
    ordered_on = start - timedelta(days=draw(st.integers(0, 40)))
    changes = []
    for i in range(draw(st.integers(0, 4))):
        on = start + timedelta(days=draw(st.integers(0, 500)))
        changes.append(Change(f"c{i}", datetime.combine(on - timedelta(days=draw(st.integers(0, 5))), time(9), UTC), on, Decimal(draw(st.integers(1, 50)))))
    if draw(st.booleans()):
        asked = start + timedelta(days=draw(st.integers(0, 500)))
        changes.append(Change("cancel", datetime.combine(asked, time(9), UTC), asked, None))
    planned = schedule(
        subscription_id="s",
        quantity=Decimal(draw(st.integers(1, 50))),
        start_on=start,
        ordered_at=datetime.combine(ordered_on, time(9), UTC),
        order_id="o",
        changes=tuple(changes),
        policy=policy,
        calendar=BusinessCalendar("US"),
        tz=UTC,
    )
    return Subscription("s", BUYER.account_id, "P", planned, policy), ordered_on


def months(first: date, count: int) -> list[Period]:
    start = Period.containing(first)
    return [start.shift(i) for i in range(count)]


@settings(max_examples=150, deadline=None)
@given(orders())
def test_billed_service_periods_have_no_gap_and_no_overlap(case: tuple[Subscription, date]) -> None:
    sub, ordered_on = case
    product = ProductInfo("P", "Licence", None, None, None, "recurring", sub.policy)
    horizon = months(min(ordered_on, sub.schedule.billing_starts_on) - timedelta(days=40), 40)
    spans: list[tuple[date, date]] = []
    for run in horizon:
        result = rate_period("r", run, buyers=[BUYER], products={"P": product}, price_of=price_of, subscriptions=[sub])
        for line in result.lines.get(BUYER.account_id, ()):
            assert line.amount.amount <= line.quantity * UNIT, "a prorated charge never exceeds the full one"
            if "addition" not in line.description:
                spans.append((line.service_period_start, line.service_period_end))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start == end + timedelta(days=1), f"gap or overlap between {end} and {start}"
    if not spans:
        return
    plan = sub.schedule
    daily = sub.policy.proration == "daily"
    assert spans[0][0] == (plan.billing_starts_on if daily else Period.containing(plan.billing_starts_on).start)
    last_billed = horizon[-1].end if sub.policy.timing == "arrears" else horizon[-1].next().end
    if plan.ends_on is not None and plan.ends_on < horizon[-1].start:
        assert spans[-1][1] == (plan.ends_on if daily else Period.containing(plan.ends_on).end)
    else:
        assert spans[-1][1] <= last_billed


@settings(max_examples=100, deadline=None)
@given(st.integers(2020, 2040), st.integers(1, 12), st.integers(1, 40))
def test_a_full_month_prorated_daily_bills_exactly_the_full_price_in_every_month_length(year: int, month: int, quantity: int) -> None:
    period = Period.of_month(year, month)
    assert period.days in (28, 29, 30, 31) and (period.days == 29) == (month == 2 and (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)))
    policy = BillingPolicy(proration=Proration.DAILY)
    product = ProductInfo("P", "Licence", None, None, None, "recurring", policy)

    def lines_from(start_on: date) -> Sequence[RatedLine]:
        plan = schedule(
            subscription_id="s",
            quantity=Decimal(quantity),
            start_on=start_on,
            ordered_at=datetime(2019, 1, 1, tzinfo=UTC),
            order_id="o",
            changes=(),
            policy=policy,
            calendar=BusinessCalendar(None),
            tz=UTC,
        )
        subscription = Subscription("s", "acct", "P", plan, policy)
        return rate_period("r", period, buyers=[BUYER], products={"P": product}, price_of=price_of, subscriptions=[subscription]).lines["acct"]

    (line,) = lines_from(period.start - timedelta(days=3))
    assert line.amount.amount == Decimal(quantity) * UNIT
    (single,) = lines_from(period.end)
    assert (single.amount.amount * period.days).quantize(Decimal("0.0001")) == (Decimal(quantity) * UNIT).quantize(Decimal("0.0001"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.integers(2011, 2040), st.integers(1, 12))
def test_a_record_at_midnight_on_the_first_lands_in_that_month_in_the_sellers_zone(zone_name: str, year: int, month: int) -> None:
    tz = ZoneInfo(zone_name)
    period = Period.of_month(year, month, tz)
    first_instant = local_midnight(period.start, tz)
    assert first_instant.astimezone(tz).date() == period.start
    assert first_instant.astimezone(tz).time() == time(0)
    before = first_instant - timedelta(microseconds=1)
    assert period.contains(first_instant) and not period.contains(before)
    assert period.previous().contains(before)
    assert Period.of_instant(first_instant, tz) == period
    product = ProductInfo("U", "Usage", None, None, None, "usage", BillingPolicy(quantity_rule=QuantityRule.USAGE_SUM))
    usage = [Usage("at-midnight", "acct", "U", Decimal(1), first_instant), Usage("just-before", "acct", "U", Decimal(100), before)]
    result = rate_period("r", period, buyers=[BUYER], products={"U": product}, price_of=price_of, usage=usage)
    assert result.billed_usage == ("at-midnight",)
