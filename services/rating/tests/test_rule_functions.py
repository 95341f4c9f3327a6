"""Each rule function on its own, as the rating README's rules table names it: every price model,
quantity rule, proration rule and effective-date rule, with BILLING-RULES' worked examples to the
cent; and each table that chooses them covers its whole enum."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from rating import effective_dates
from rating.billrun import rating
from rating.billrun.rating import Observation, ProductInfo, Quantity, Subscription, Usage
from rating.business_days import BusinessCalendar
from rating.period import Period
from rating.policy import BillingPolicy, FirstPeriod, Proration, QuantityRule
from rating.pricing import PRICE_MODELS, PriceModel, PriceModelKind, Segment, Tier, parse_model
from rating.schedule import Change, schedule

from .conftest import at

OCTOBER = Period.parse("2026-10")
NOVEMBER = Period.parse("2026-11")
US = BusinessCalendar("US")
ACCOUNT = "acct-contoso"


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def total(segments: list[Segment]) -> Decimal:
    return cents(sum((s.amount for s in segments), Decimal(0)))


def product(code: str, rule: QuantityRule = QuantityRule.CONTRACTED, **knobs: Any) -> ProductInfo:
    return ProductInfo(code, code, None, None, None, "recurring", BillingPolicy(quantity_rule=rule, **knobs))


def subscription(code: str, quantity: str, start: date, ordered: str, *, changes: tuple[Change, ...] = (), **knobs: Any) -> Subscription:
    policy = BillingPolicy(**knobs)
    planned = schedule(
        subscription_id=f"s-{code}",
        quantity=Decimal(quantity),
        start_on=start,
        ordered_at=at(ordered),
        order_id=f"o-{code}",
        changes=changes,
        policy=policy,
        calendar=US,
        tz=UTC,
    )
    return Subscription(f"s-{code}", ACCOUNT, code, planned, policy)


def count(oid: str, quantity: str, when: str) -> Observation:
    return Observation(oid, ACCOUNT, "X", Decimal(quantity), at(when))


def items(oid: str, when: str, **states: str) -> Observation:
    return Observation(oid, ACCOUNT, "EML-HST", None, at(when), tuple(sorted(states.items())))


def in_period(period: Period, history: list[Observation]) -> list[Observation]:
    return [o for o in history if period.contains(o.observed_at)]


class TestTables:
    def test_every_price_model_has_its_function(self) -> None:
        assert set(PRICE_MODELS) == set(PriceModelKind)

    def test_every_quantity_rule_has_its_function(self) -> None:
        assert set(rating.QUANTITY_RULES) == set(QuantityRule)
        assert set(rating.OBSERVED_COUNTS) == set(QuantityRule) - {QuantityRule.CONTRACTED, QuantityRule.USAGE_SUM}

    def test_every_proration_has_its_function(self) -> None:
        assert set(rating.PRORATION) == set(Proration)

    def test_a_parsed_model_is_priced_by_its_kind_s_function(self) -> None:
        model = parse_model({"model": "package", "package_size": "10", "package_price": "40.00"})
        assert model.segments(Decimal(25)) == PRICE_MODELS[PriceModelKind.PACKAGE](model, Decimal(25), None, None)


class TestPriceModels:
    TIERS = (Tier(Decimal(10), Decimal("5.00")), Tier(Decimal(20), Decimal("4.00")), Tier(None, Decimal("3.00")))

    def test_per_unit_example_a_users(self) -> None:
        model = PriceModel(PriceModelKind.PER_UNIT, unit_price=Decimal("35.00"))
        assert total(PRICE_MODELS[PriceModelKind.PER_UNIT](model, Decimal(15), None, None)) == Decimal("525.00")
        assert PRICE_MODELS[PriceModelKind.PER_UNIT](model, Decimal(0), None, None) == []

    def test_graduated_bills_each_tier_at_its_price(self) -> None:
        segments = PRICE_MODELS[PriceModelKind.GRADUATED](PriceModel(PriceModelKind.GRADUATED, tiers=self.TIERS), Decimal(25), None, None)
        assert [(s.quantity, s.unit_price, s.note) for s in segments] == [
            (Decimal(10), Decimal("5.00"), "tier 1"),
            (Decimal(10), Decimal("4.00"), "tier 2"),
            (Decimal(5), Decimal("3.00"), "tier 3"),
        ]
        assert total(segments) == Decimal("105.00")
        credit = PRICE_MODELS[PriceModelKind.GRADUATED](PriceModel(PriceModelKind.GRADUATED, tiers=self.TIERS), Decimal(-12), None, None)
        assert total(credit) == Decimal("-58.00")

    def test_volume_bills_every_unit_at_the_reached_tier(self) -> None:
        segments = PRICE_MODELS[PriceModelKind.VOLUME](PriceModel(PriceModelKind.VOLUME, tiers=self.TIERS), Decimal(15), None, None)
        assert [(s.quantity, s.unit_price) for s in segments] == [(Decimal(15), Decimal("4.00"))]
        assert PRICE_MODELS[PriceModelKind.VOLUME](PriceModel(PriceModelKind.VOLUME, tiers=self.TIERS), Decimal(0), None, None) == []

    def test_package_bills_whole_packages(self) -> None:
        model = PriceModel(PriceModelKind.PACKAGE, package_size=Decimal(10), package_price=Decimal("40.00"))
        segments = PRICE_MODELS[PriceModelKind.PACKAGE](model, Decimal(25), None, None)
        assert [(s.quantity, s.unit_price) for s in segments] == [(Decimal(3), Decimal("40.00"))]
        assert total(PRICE_MODELS[PriceModelKind.PACKAGE](model, Decimal(-1), None, None)) == Decimal("-40.00")

    def test_flat_is_one_amount_for_any_quantity(self) -> None:
        model = PriceModel(PriceModelKind.FLAT, amount=Decimal("52.50"))
        assert total(PRICE_MODELS[PriceModelKind.FLAT](model, Decimal(7), None, None)) == Decimal("52.50")
        assert PRICE_MODELS[PriceModelKind.FLAT](model, Decimal(0), None, None) == []

    def test_cost_plus_example_c(self) -> None:
        model = PriceModel(PriceModelKind.COST_PLUS, markup_percent=Decimal(15))
        cost = Decimal("1234.56") + Decimal("789.01") + Decimal("0.43")
        assert total(PRICE_MODELS[PriceModelKind.COST_PLUS](model, Decimal(3), cost, None)) == Decimal("2327.60")
        assert PRICE_MODELS[PriceModelKind.COST_PLUS](model, Decimal(3), None, None) == []

    def test_markup_over_the_wholesale_model(self) -> None:
        wholesale = PriceModel(PriceModelKind.PER_UNIT, unit_price=Decimal("35.00"))
        retail = PriceModel(PriceModelKind.MARKUP, markup_percent=Decimal(20))
        segments = PRICE_MODELS[PriceModelKind.MARKUP](retail, Decimal(15), None, wholesale)
        assert [(s.quantity, s.unit_price) for s in segments] == [(Decimal(15), Decimal("42.00"))]
        assert PRICE_MODELS[PriceModelKind.MARKUP](retail, Decimal(15), None, None) == []
        assert PRICE_MODELS[PriceModelKind.MARKUP](retail, Decimal(15), None, retail) == []


class TestObservedCounts:
    """Example A, Contoso Dental's October."""

    USERS = [count("u1", "14", "2026-10-01T08:00:00"), count("u2", "16", "2026-10-15T08:00:00"), count("u3", "15", "2026-10-30T08:00:00")]

    def test_latest_example_a_users(self) -> None:
        assert rating.latest(OCTOBER, BillingPolicy(), self.USERS, in_period(OCTOBER, self.USERS)) == (Decimal(15), ["u3"])

    def test_peak_is_the_highest_count(self) -> None:
        assert rating.peak(OCTOBER, BillingPolicy(), self.USERS, in_period(OCTOBER, self.USERS)) == (Decimal(16), ["u2"])
        assert rating.peak(OCTOBER, BillingPolicy(), [], []) == (None, [])

    def test_snapshot_example_a_servers_and_carried_forward_workstations(self) -> None:
        policy = BillingPolicy(quantity_rule=QuantityRule.SNAPSHOT, snapshot_day=23)
        servers = [count("s1", "2", "2026-10-05T08:00:00"), count("s2", "3", "2026-10-23T23:59:00"), count("s3", "2", "2026-10-27T08:00:00")]
        assert rating.snapshot(OCTOBER, policy, servers, in_period(OCTOBER, servers)) == (Decimal(3), ["s2"])
        workstations = [count("w1", "18", "2026-09-23T08:00:00"), count("w2", "20", "2026-10-25T08:00:00")]
        assert rating.snapshot(OCTOBER, policy, workstations, in_period(OCTOBER, workstations)) == (Decimal(18), ["w1"])

    def test_distinct_active_example_a_mailboxes(self) -> None:
        before = items("m-sep", "2026-09-30T08:00:00", **{f"m{n}": "active" for n in range(1, 11)})
        history = [before, items("m-new", "2026-10-12T08:00:00", m11="active"), items("m-del", "2026-10-20T08:00:00", m3="deleted")]
        quantity, ids = rating.distinct_active(OCTOBER, BillingPolicy(), history, in_period(OCTOBER, history))
        assert (quantity, ids) == (Decimal(11), ["m-del", "m-new"])
        assert quantity is not None and cents(quantity * Decimal("6.75")) == Decimal("74.25")
        # November: m3 has dropped off.
        assert rating.distinct_active(NOVEMBER, BillingPolicy(), history, [])[0] == Decimal(10)
        assert rating.distinct_active(OCTOBER, BillingPolicy(), [], []) == (None, [])


class TestQuantityRules:
    def test_usage_sum_example_c_costs(self) -> None:
        records = [
            Usage(f"r{n}", ACCOUNT, "AZURE", Decimal(1), at(f"2026-10-{day:02d}T10:00:00"), Decimal(cost))
            for n, (day, cost) in enumerate([(3, "1234.56"), (9, "789.01"), (28, "0.43")])
        ]
        out, used, obs, mismatch = rating.usage_sum(OCTOBER, product("AZURE", QuantityRule.USAGE_SUM), rating._Key(usage=records), {})
        assert [(q.quantity, q.cost, q.service, q.late) for q in out] == [(Decimal(3), Decimal("2024.00"), (OCTOBER.start, OCTOBER.end), False)]
        assert (used, obs, mismatch) == (["r0", "r1", "r2"], [], False)

    def test_usage_sum_bills_late_usage_in_its_own_period_and_flags_counts(self) -> None:
        september = Period.parse("2026-09")
        late = Usage("late", ACCOUNT, "BKP", Decimal(5), at("2026-09-20T10:00:00"))
        found = rating._Key(late={september: [late]}, observations=[count("c", "1", "2026-10-02T00:00:00")])
        out, used, _, mismatch = rating.usage_sum(OCTOBER, product("BKP", QuantityRule.USAGE_SUM), found, {})
        assert [(q.quantity, q.service, q.late) for q in out] == [(Decimal(5), (september.start, september.end), True)]
        assert used == ["late"] and mismatch

    def test_contracted_example_a_own_environment(self) -> None:
        lic = subscription("STL-LIC", "2", date(2026, 9, 1), "2026-08-20T10:00:00")
        out, _, _, mismatch = rating.contracted(OCTOBER, product("STL-LIC"), rating._Key(subscriptions=[lic]), {})
        assert [(q.quantity, q.rule, q.service) for q in out] == [(Decimal(2), "contracted", (OCTOBER.start, OCTOBER.end))]
        assert cents(out[0].quantity * Decimal("47.25")) == Decimal("94.50") and not mismatch

    def test_observed_stands_in_the_ordered_quantity_only_once_the_subscription_bills(self) -> None:
        # Example A's Fabrikam: 8 users ordered Oct 14, next_period: nothing in October, 8 in November.
        users = product("USR-SUP", QuantityRule.LATEST)
        fabrikam = subscription("USR-SUP", "8", date(2026, 10, 14), "2026-10-14T10:00:00", quantity_rule=QuantityRule.LATEST, first_period="next_period")
        found = rating._Key(subscriptions=[fabrikam])
        assert rating.observed(OCTOBER, users, found, {}) == ([], [], [], False)
        out, _, _, _ = rating.observed(NOVEMBER, users, found, {})
        assert [(q.quantity, q.rule) for q in out] == [(Decimal(8), "latest")]

    def test_observed_bills_the_count_over_the_ordered_quantity(self) -> None:
        users = product("USR-SUP", QuantityRule.LATEST)
        found = rating._Key(observations=TestObservedCounts.USERS)
        out, _, obs, _ = rating.observed(OCTOBER, users, found, {})
        assert [q.quantity for q in out] == [Decimal(15)] and obs == ["u3"]


class TestProration:
    PRICE = PriceModel(PriceModelKind.PER_UNIT, unit_price=Decimal("20.60"))

    def test_daily_fraction(self) -> None:
        assert rating.daily_fraction(date(2026, 10, 1), date(2026, 10, 31), OCTOBER) is None
        assert rating.daily_fraction(date(2026, 10, 17), date(2026, 10, 31), OCTOBER) == (15, 31)

    def test_prorated_example_b_acme_addition(self) -> None:
        segments = rating.prorated(self.PRICE.segments(Decimal(4)), (15, 31))
        assert total(segments) == Decimal("39.87") and segments[0].note == "15/31 days"

    def test_daily_advance_additions_example_b_acme(self) -> None:
        # 10 users billed ahead for October; 4 added on Oct 17: billed by the run closing October.
        add = change_on("add", "2026-10-17T09:00:00", date(2026, 10, 17), "14")
        acme = subscription("M365-BP", "10", date(2026, 10, 1), "2026-09-15T10:00:00", changes=(add,), timing="advance", proration="daily")
        out = rating.daily_advance_additions(OCTOBER, product("M365-BP", timing="advance", proration="daily"), acme)
        assert [(q.quantity, q.service, q.fraction, q.note) for q in out] == [(Decimal(4), (date(2026, 10, 17), date(2026, 10, 31)), (15, 31), "addition")]
        plain = replace(acme, policy=replace(acme.policy, proration=Proration.NONE))
        assert rating.daily_advance_additions(OCTOBER, product("M365-BP"), plain) == []

    def test_daily_proration_in_advance_bills_the_first_day_s_quantity(self) -> None:
        # Example B's November: 14 users billed ahead in full.
        add = change_on("add", "2026-10-17T09:00:00", date(2026, 10, 17), "14")
        acme = subscription("M365-BP", "10", date(2026, 10, 1), "2026-09-15T10:00:00", changes=(add,), timing="advance", proration="daily")
        out = rating.daily_proration(product("M365-BP"), acme, (NOVEMBER.start, NOVEMBER.end), OCTOBER)
        assert [(q.quantity, q.fraction) for q in out] == [(Decimal(14), None)]
        assert cents(out[0].quantity * Decimal("20.60")) == Decimal("288.40")

    def test_daily_proration_in_arrears_bills_each_span(self) -> None:
        add = change_on("add", "2026-10-17T09:00:00", date(2026, 10, 17), "14")
        sub = subscription("M365-BP", "10", date(2026, 10, 1), "2026-09-15T10:00:00", changes=(add,), proration="daily")
        out = rating.daily_proration(product("M365-BP"), sub, (OCTOBER.start, OCTOBER.end), OCTOBER)
        assert [(q.quantity, q.service, q.fraction) for q in out] == [
            (Decimal(10), (date(2026, 10, 1), date(2026, 10, 16)), (16, 31)),
            (Decimal(14), (date(2026, 10, 17), date(2026, 10, 31)), (15, 31)),
        ]

    def test_no_proration_bills_the_last_day_s_quantity_in_full(self) -> None:
        add = change_on("add", "2026-10-17T09:00:00", date(2026, 10, 17), "14")
        sub = subscription("M365-BP", "10", date(2026, 10, 1), "2026-09-15T10:00:00", changes=(add,))
        out = rating.no_proration(product("M365-BP"), sub, (OCTOBER.start, OCTOBER.end), OCTOBER)
        assert [(q.quantity, q.service, q.fraction) for q in out] == [(Decimal(14), (OCTOBER.start, OCTOBER.end), None)]

    def test_a_yearly_term_is_never_prorated(self) -> None:
        sub = subscription("ANNUAL", "3", date(2026, 10, 14), "2026-10-14T10:00:00", interval="year")
        term = (date(2026, 10, 1), date(2027, 9, 30))
        assert rating._recurring(product("ANNUAL"), replace(sub, policy=replace(sub.policy, proration=Proration.DAILY)), term, OCTOBER) == [
            Quantity("ANNUAL", "recurring", term, Decimal(3), "contracted", subscription_id="s-ANNUAL")
        ]


def change_on(oid: str, requested: str, effective: date, quantity: str | None) -> Change:
    return Change(oid, at(requested), effective, Decimal(quantity) if quantity is not None else None)


class TestEffectiveDates:
    def test_change_cutoff_example_a_last_three_business_days(self) -> None:
        policy = BillingPolicy(change_cutoff_business_days=3)
        # October 2026 ends on a Saturday: its last 3 business days are Oct 28–30.
        assert effective_dates.change_cutoff(date(2026, 10, 28), date(2026, 10, 28), policy, US) == date(2026, 11, 1)
        assert effective_dates.change_cutoff(date(2026, 10, 27), date(2026, 10, 27), policy, US) == date(2026, 10, 27)
        assert effective_dates.change_cutoff(date(2026, 10, 29), date(2026, 11, 15), policy, US) == date(2026, 11, 15)
        assert effective_dates.change_cutoff(date(2026, 10, 30), date(2026, 10, 30), BillingPolicy(), US) == date(2026, 10, 30)

    def test_service_start_keeps_a_backdated_start(self) -> None:
        policy = BillingPolicy(change_cutoff_business_days=3)
        assert effective_dates.service_start(date(2026, 10, 29), date(2026, 9, 1), policy, US) == date(2026, 9, 1)
        assert effective_dates.service_start(date(2026, 10, 29), date(2026, 10, 29), policy, US) == date(2026, 11, 1)

    @pytest.mark.parametrize(
        ("first_period", "expected"),
        [("order_period", date(2026, 10, 14)), ("next_period", date(2026, 11, 1))],
    )
    def test_first_billed_day_example_a_fabrikam(self, first_period: str, expected: date) -> None:
        assert effective_dates.first_billed_day(date(2026, 10, 14), date(2026, 10, 14), BillingPolicy(first_period=FirstPeriod(first_period))) == expected

    def test_commitment_end(self) -> None:
        assert effective_dates.commitment_end(date(2026, 8, 1), BillingPolicy(commitment_months=12)) == date(2027, 7, 31)
        assert effective_dates.commitment_end(date(2026, 1, 31), BillingPolicy(commitment_months=1)) == date(2026, 2, 27)
        assert effective_dates.commitment_end(date(2026, 8, 1), BillingPolicy()) is None

    def test_notice_end(self) -> None:
        # 30 US business days from Monday 2 November 2026 end on Wednesday 16 December.
        policy = BillingPolicy(notice_business_days=30)
        assert effective_dates.notice_end(date(2026, 11, 2), date(2026, 11, 2), policy, US) == date(2026, 12, 16)
        assert effective_dates.notice_end(date(2026, 11, 2), date(2027, 2, 28), policy, US) == date(2027, 2, 28)

    def test_vendor_cutoff_example_datto(self) -> None:
        policy = BillingPolicy(vendor_cutoff_day=10)
        assert effective_dates.vendor_cutoff(date(2026, 10, 10), date(2026, 10, 10), policy) == date(2026, 10, 10)
        assert effective_dates.vendor_cutoff(date(2026, 10, 11), date(2026, 10, 11), policy) == date(2026, 11, 30)

    def test_cancellation_end_never_before_the_commitment(self) -> None:
        policy = BillingPolicy(notice_business_days=30, commitment_months=12)
        assert effective_dates.cancellation_end(date(2026, 3, 2), date(2026, 3, 2), policy, US, date(2027, 1, 4)) == date(2027, 1, 4)
        assert effective_dates.cancellation_end(date(2026, 11, 2), date(2026, 11, 2), policy, US, None) == date(2026, 12, 16)
