"""Policy knobs and price models without a server: business days, the change cut-off, first
period, notice, vendor cut-off, commitment; per unit, graduated, volume, package, flat, cost-plus."""

from __future__ import annotations

from datetime import UTC, date
from decimal import Decimal
from typing import Any

import pytest

from rating.business_days import BusinessCalendar
from rating.errors import InvalidPolicy, InvalidPriceModel, InvalidSnapshotDay
from rating.policy import BillingPolicy, QuantityRule, check
from rating.pricing import parse_model
from rating.schedule import Change, Schedule, schedule

from .conftest import at

US = BusinessCalendar("US")


def plan(ordered: str, start: date, changes: tuple[Change, ...] = (), **knobs: Any) -> Schedule:
    return schedule(
        subscription_id="s",
        quantity=Decimal(10),
        start_on=start,
        ordered_at=at(ordered),
        order_id="o",
        changes=changes,
        policy=BillingPolicy(**knobs),
        calendar=US,
        tz=UTC,
    )


class TestBusinessDays:
    def test_weekends_and_the_countrys_holidays_are_skipped(self) -> None:
        # Thanksgiving 2026 is Thursday 26 November.
        assert US.add_business_days(date(2026, 11, 25), 1) == date(2026, 11, 27)
        assert BusinessCalendar("GB").is_business_day(date(2026, 11, 26))
        assert US.first_business_day_after(date(2026, 10, 31)) == date(2026, 11, 2)
        # The first business day of 2027 in the US: 1 January is New Year's Day, a Friday.
        assert US.first_business_day_after(date(2026, 12, 31)) == date(2027, 1, 4)

    def test_the_last_k_business_days_of_a_period(self) -> None:
        assert US.last_business_days_start(date(2026, 10, 31), 3) == date(2026, 10, 28)
        assert US.last_business_days_start(date(2026, 10, 31), 0) is None


class TestSchedule:
    def test_change_cutoff_moves_an_order_in_the_last_k_business_days_to_the_next_period(self) -> None:
        late = plan("2026-10-29T10:00:00", date(2026, 10, 29), change_cutoff_business_days=3)
        assert (late.starts_on, late.billing_starts_on) == (date(2026, 11, 1), date(2026, 11, 1))
        early = plan("2026-10-27T10:00:00", date(2026, 10, 27), change_cutoff_business_days=3)
        assert early.starts_on == date(2026, 10, 27)

    def test_change_cutoff_applies_to_quantity_changes(self) -> None:
        change = Change("c", at("2026-10-30T09:00:00"), date(2026, 10, 30), Decimal(12))
        p = plan("2026-09-01T00:00:00", date(2026, 9, 1), (change,), change_cutoff_business_days=3)
        assert [s.effective_on for s in p.steps] == [date(2026, 9, 1), date(2026, 11, 1)]
        assert p.quantity_on(date(2026, 10, 31)) == Decimal(10) and p.quantity_on(date(2026, 11, 1)) == Decimal(12)

    def test_next_period_starts_billing_the_month_after_the_order(self) -> None:
        assert plan("2026-07-06T10:00:00", date(2026, 7, 6), first_period="next_period").billing_starts_on == date(2026, 8, 1)

    def test_notice_in_business_days(self) -> None:
        # 30 US business days from Monday 2 November 2026 (Veterans Day 11 Nov, Thanksgiving 26 Nov,
        # Christmas 25 Dec) end on Wednesday 16 December.
        cancel = Change("x", at("2026-11-02T09:00:00"), date(2026, 11, 2), None)
        p = plan("2026-01-05T00:00:00", date(2026, 1, 5), (cancel,), notice_business_days=30)
        assert (p.cancel_requested_on, p.ends_on) == (date(2026, 11, 2), date(2026, 12, 16))

    def test_a_later_asked_for_date_stands(self) -> None:
        cancel = Change("x", at("2026-11-02T09:00:00"), date(2027, 2, 28), None)
        assert plan("2026-01-05T00:00:00", date(2026, 1, 5), (cancel,), notice_business_days=30).ends_on == date(2027, 2, 28)

    def test_vendor_cutoff_day_bills_one_more_period(self) -> None:
        on_time = Change("x", at("2026-10-10T09:00:00"), date(2026, 10, 10), None)
        too_late = Change("x", at("2026-10-11T09:00:00"), date(2026, 10, 11), None)
        assert plan("2026-01-05T00:00:00", date(2026, 1, 5), (on_time,), vendor_cutoff_day=10).ends_on == date(2026, 10, 10)
        assert plan("2026-01-05T00:00:00", date(2026, 1, 5), (too_late,), vendor_cutoff_day=10).ends_on == date(2026, 11, 30)

    def test_commitment_keeps_billing_until_it_ends(self) -> None:
        cancel = Change("x", at("2026-03-02T09:00:00"), date(2026, 3, 2), None)
        p = plan("2026-01-05T00:00:00", date(2026, 1, 5), (cancel,), commitment_months=12)
        assert (p.commitment_ends_on, p.ends_on) == (date(2027, 1, 4), date(2027, 1, 4))

    def test_the_earliest_cancellation_counts(self) -> None:
        first = Change("x1", at("2026-03-02T09:00:00"), date(2026, 3, 31), None)
        second = Change("x2", at("2026-04-02T09:00:00"), date(2026, 6, 30), None)
        assert plan("2026-01-05T00:00:00", date(2026, 1, 5), (second, first)).ends_on == date(2026, 3, 31)


class TestPolicyChecks:
    @pytest.mark.parametrize("day", [None, 0, 29, 31, -1])
    def test_snapshot_day_must_be_1_to_28(self, day: int | None) -> None:
        with pytest.raises(InvalidSnapshotDay):
            check(BillingPolicy(quantity_rule=QuantityRule.SNAPSHOT, snapshot_day=day))

    @pytest.mark.parametrize(
        "knobs",
        [
            {"quantity_rule": QuantityRule.LATEST, "timing": "advance"},
            {"quantity_rule": QuantityRule.USAGE_SUM, "true_up": True},
            {"interval": "year", "proration": "daily"},
            {"quantity_rule": QuantityRule.PEAK, "interval": "year"},
        ],
    )
    def test_combinations_that_make_no_sense(self, knobs: dict[str, Any]) -> None:
        with pytest.raises(InvalidPolicy):
            check(BillingPolicy(**knobs))

    def test_a_subscription_override_of_the_rule_drops_the_products_snapshot_day(self) -> None:
        product = check(BillingPolicy(quantity_rule=QuantityRule.SNAPSHOT, snapshot_day=23))
        assert product.overridden({"quantity_rule": "latest"}).snapshot_day is None
        assert product.overridden({"snapshot_day": 10}).snapshot_day == 10


class TestPriceModels:
    def amounts(self, model: dict[str, Any], quantity: str, cost: str | None = None) -> list[tuple[str, str]]:
        segments = parse_model(model).segments(Decimal(quantity), Decimal(cost) if cost else None)
        return [(str(s.quantity), str(s.amount)) for s in segments]

    TIERS = [{"up_to": "10", "unit_price": "5.00"}, {"up_to": "50", "unit_price": "4.00"}, {"up_to": None, "unit_price": "3.00"}]

    def test_per_unit(self) -> None:
        assert self.amounts({"model": "per_unit", "unit_price": "47.25"}, "2") == [("2", "94.50")]

    def test_graduated_prices_each_unit_in_its_tier(self) -> None:
        assert self.amounts({"model": "graduated", "tiers": self.TIERS}, "55") == [("10", "50.00"), ("40", "160.00"), ("5", "15.00")]
        assert self.amounts({"model": "graduated", "tiers": self.TIERS}, "10") == [("10", "50.00")]

    def test_volume_prices_all_units_at_the_tier_reached(self) -> None:
        assert self.amounts({"model": "volume", "tiers": self.TIERS}, "55") == [("55", "165.00")]
        assert self.amounts({"model": "volume", "tiers": self.TIERS}, "50") == [("50", "200.00")]

    def test_package_rounds_up_to_whole_blocks(self) -> None:
        assert self.amounts({"model": "package", "package_size": "10", "package_price": "20.00"}, "21") == [("3", "60.00")]
        assert self.amounts({"model": "package", "package_size": "10", "package_price": "20.00"}, "20") == [("2", "40.00")]

    def test_flat_fee_whatever_the_quantity(self) -> None:
        assert self.amounts({"model": "flat", "amount": "99.00"}, "37") == [("1", "99.00")]
        assert self.amounts({"model": "flat", "amount": "99.00"}, "0") == []

    def test_cost_plus(self) -> None:
        assert self.amounts({"model": "cost_plus", "markup_percent": "15"}, "3", "2024.00") == [("2024.00", "2327.6000")]

    @pytest.mark.parametrize(
        "model",
        [
            {"model": "per_unit", "unit_price": 35.5},
            {"model": "per_unit", "unit_price": "-1"},
            {"model": "per_unit"},
            {"model": "bogus"},
            {"model": "graduated", "tiers": []},
            {"model": "graduated", "tiers": [{"up_to": "5", "unit_price": "1"}]},
            {"model": "graduated", "tiers": [{"up_to": "5", "unit_price": "1"}, {"up_to": "3", "unit_price": "1"}, {"up_to": None, "unit_price": "1"}]},
            {"model": "package", "package_size": "0", "package_price": "1"},
            {"model": "per_unit", "unit_price": "1", "amount": "2"},
        ],
    )
    def test_bad_models_are_refused(self, model: dict[str, Any]) -> None:
        with pytest.raises(InvalidPriceModel):
            parse_model(model)
