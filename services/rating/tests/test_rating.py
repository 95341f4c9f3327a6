"""The rating function, without a server: every quantity rule, proration, first period, setup,
true-up, late usage, discounts, unrated inputs and the wholesale attribution, with exact numbers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from rating.billrun.rating import (
    Buyer,
    Discount,
    Observation,
    Price,
    ProductInfo,
    Rating,
    Subscription,
    Unrated,
    UnratedReason,
    Usage,
    rate_period,
)
from rating.business_days import BusinessCalendar
from rating.period import Period
from rating.policy import BillingPolicy, QuantityRule
from rating.pricing import PriceModel, PriceModelKind, parse_model
from rating.schedule import Change, schedule

from .conftest import at

RUN = "run-1"
OCTOBER = Period.parse("2026-10")
ALICE = Buyer("acct-alice", "USD", "Alice Ltd")


def product(code: str, rule: QuantityRule = QuantityRule.CONTRACTED, kind: str = "recurring", **knobs: Any) -> ProductInfo:
    return ProductInfo(code, f"Product {code}", "Software as a Service", "user", "standard", kind, BillingPolicy(quantity_rule=rule, **knobs))


PRODUCTS = {
    "EML-HST": product("EML-HST"),
    "BKP-GB": product("BKP-GB", QuantityRule.USAGE_SUM, "usage"),
    "USR-SUP": product("USR-SUP", QuantityRule.LATEST),
    "SRV-SUP": product("SRV-SUP", QuantityRule.SNAPSHOT, snapshot_day=23),
    "PEAK": product("PEAK", QuantityRule.PEAK),
    "MBX": product("MBX", QuantityRule.DISTINCT_ACTIVE),
    "SETUP-CORE": product("SETUP-CORE", kind="one_time"),
    "AZURE": product("AZURE", QuantityRule.USAGE_SUM, "usage"),
}
PRICES: dict[str, dict[str, Any]] = {
    "EML-HST": {"model": "per_unit", "unit_price": "6.75"},
    "BKP-GB": {"model": "per_unit", "unit_price": "0.10"},
    "USR-SUP": {"model": "per_unit", "unit_price": "35.00"},
    "SRV-SUP": {"model": "per_unit", "unit_price": "85.00"},
    "PEAK": {"model": "per_unit", "unit_price": "2"},
    "MBX": {"model": "per_unit", "unit_price": "6.75"},
    "SETUP-CORE": {"model": "per_unit", "unit_price": "25.00"},
    "AZURE": {"model": "cost_plus", "markup_percent": "15"},
}


def price_of(code: str, period: Period, currency: str = "USD") -> Price | None:
    return Price(parse_model(PRICES[code]), "USD") if code in PRICES else None


def sub(
    sid: str,
    code: str,
    quantity: str,
    start: date,
    ordered: str = "2026-08-01T09:00:00",
    *,
    changes: tuple[Change, ...] = (),
    account: str = ALICE.account_id,
    exempt: bool = False,
    **knobs: Any,
) -> Subscription:
    policy = replace(PRODUCTS[code].policy, **knobs) if code in PRODUCTS else BillingPolicy(**knobs)
    planned = schedule(
        subscription_id=sid,
        quantity=Decimal(quantity),
        start_on=start,
        ordered_at=at(ordered),
        order_id=f"o-{sid}",
        changes=changes,
        policy=policy,
        calendar=BusinessCalendar("US"),
        tz=UTC,
    )
    return Subscription(sid, account, code, planned, policy, exempt)


def change(oid: str, requested: str, effective: date, quantity: str | None) -> Change:
    return Change(oid, at(requested), effective, Decimal(quantity) if quantity is not None else None)


def usage(rid: str, quantity: str, when: str, code: str = "BKP-GB", cost: str | None = None, account: str = ALICE.account_id) -> Usage:
    return Usage(rid, account, code, Decimal(quantity), at(when), Decimal(cost) if cost is not None else None)


def count(oid: str, quantity: str, when: str, code: str = "USR-SUP") -> Observation:
    return Observation(oid, ALICE.account_id, code, Decimal(quantity), at(when))


def items(oid: str, when: str, code: str = "MBX", **states: str) -> Observation:
    return Observation(oid, ALICE.account_id, code, None, at(when), tuple(sorted(states.items())))


def rate(period: Period = OCTOBER, **inputs: Any) -> Rating:
    return rate_period(RUN, period, buyers=[ALICE], products=PRODUCTS, price_of=price_of, **inputs)


def table(result: Rating, account: str = ALICE.account_id) -> list[tuple[str, str, str, str, str]]:
    """(product, kind, quantity, unit price, amount) per line, amounts as exact strings."""
    return [(line.product_code, line.kind, str(line.quantity), str(line.unit_price.amount), str(line.amount.amount)) for line in result.lines.get(account, ())]


def cents(result: Rating, account: str = ALICE.account_id) -> Decimal:
    return sum((line.amount.amount for line in result.lines.get(account, ())), Decimal(0)).quantize(Decimal("0.01"))


class TestContracted:
    def test_bills_the_latest_quantity_in_force_by_period_end_in_full(self) -> None:
        changes = (change("c1", "2026-10-18T10:00:00", date(2026, 10, 20), "12"), change("c2", "2026-11-02T10:00:00", date(2026, 11, 5), "20"))
        result = rate(subscriptions=[sub("s-1", "EML-HST", "11", date(2026, 9, 1), changes=changes)])
        assert table(result) == [("EML-HST", "recurring", "12", "6.75", "81.00")]
        (line,) = result.lines[ALICE.account_id]
        assert (line.service_period_start, line.service_period_end, line.timing, line.tax_category) == (
            date(2026, 10, 1),
            date(2026, 10, 31),
            "arrears",
            "standard",
        )

    def test_a_subscription_starting_on_the_last_day_bills_the_whole_month(self) -> None:
        assert cents(rate(subscriptions=[sub("s-1", "EML-HST", "8", date(2026, 10, 31))])) == Decimal("54.00")

    def test_two_subscriptions_of_one_product_make_one_line(self) -> None:
        result = rate(subscriptions=[sub("s-1", "EML-HST", "2", date(2026, 9, 1)), sub("s-2", "EML-HST", "3", date(2026, 10, 9))])
        assert table(result) == [("EML-HST", "recurring", "5", "6.75", "33.75")]

    def test_an_order_received_after_its_period_closed_bills_late_in_the_next_run(self) -> None:
        backdated = sub("s-1", "EML-HST", "2", date(2026, 9, 1), "2026-10-05T09:00:00")
        closed = {"2026-09": at("2026-10-02T08:00:00")}
        assert rate(Period.parse("2026-09"), subscriptions=[backdated], closed=closed).lines == {}
        lines = rate(subscriptions=[backdated], closed=closed).lines[ALICE.account_id]
        assert [(line.service_period_start, line.late, line.amount.amount) for line in lines] == [
            (date(2026, 9, 1), True, Decimal("13.50")),
            (date(2026, 10, 1), False, Decimal("13.50")),
        ]
        # Had September been closed after the order arrived, its run billed it: nothing late now.
        assert len(rate(subscriptions=[backdated], closed={"2026-09": at("2026-10-06T08:00:00")}).lines[ALICE.account_id]) == 1

    def test_outside_the_period_bills_nothing(self) -> None:
        later = sub("s-1", "EML-HST", "8", date(2026, 11, 1))
        ended = sub("s-2", "EML-HST", "8", date(2026, 8, 1), changes=(change("x", "2026-09-01T00:00:00", date(2026, 9, 30), None),))
        assert rate(subscriptions=[later, ended]).lines == {}


class TestUsageSum:
    def test_sums_records_inside_the_period_only(self) -> None:
        records = [
            usage("u-first", "1.5", "2026-10-01T00:00:00"),
            usage("u-last", "2.5", "2026-10-31T23:59:59.999999"),
            usage("u-before", "100", "2026-09-30T23:59:59.999999"),
            usage("u-after", "100", "2026-11-01T00:00:00"),
        ]
        result = rate(usage=records)
        assert table(result) == [("BKP-GB", "usage", "4.0", "0.10", "0.400")]
        assert result.billed_usage == ("u-first", "u-last")

    def test_decimal_exactness(self) -> None:
        result = rate(usage=[usage(f"u-{i}", "1", "2026-10-05T10:00:00") for i in range(3)])
        assert result.lines[ALICE.account_id][0].model_dump(mode="json")["amount"] == {"amount": "0.30", "currency": "USD"}

    def test_late_usage_of_a_closed_period_bills_as_a_late_line_with_its_own_service_dates(self) -> None:
        records = [usage("u-oct", "2", "2026-10-03T00:00:00"), usage("u-sep", "5", "2026-09-29T00:00:00"), usage("u-aug", "7", "2026-08-02T00:00:00")]
        result = rate(usage=records, closed=frozenset({"2026-09"}))  # August was never closed: its run will bill it
        lines = result.lines[ALICE.account_id]
        assert [(line.quantity, line.late, line.service_period_start, line.service_period_end) for line in lines] == [
            (Decimal("5"), True, date(2026, 9, 1), date(2026, 9, 30)),
            (Decimal("2"), False, date(2026, 10, 1), date(2026, 10, 31)),
        ]
        assert result.billed_usage == ("u-oct", "u-sep")
        assert lines[0].line_id != lines[1].line_id


class TestObservedRules:
    def test_latest(self) -> None:
        counts = [
            count("q-1", "14", "2026-10-01T23:00:00"),
            count("q-3", "15", "2026-10-30T23:00:00"),
            count("q-2", "16", "2026-10-15T23:00:00"),
            count("q-next", "99", "2026-11-01T00:00:00"),
        ]
        result = rate(observations=counts)
        assert table(result) == [("USR-SUP", "recurring", "15", "35.00", "525.00")]
        assert result.billed_observations == ("q-3",)
        assert result.lines[ALICE.account_id][0].quantity_rule == "latest"

    def test_latest_without_a_count_in_the_period_bills_nothing(self) -> None:
        assert rate(observations=[count("q-1", "14", "2026-09-30T23:00:00")]).lines == {}

    def test_snapshot_takes_the_latest_count_on_or_before_day_n(self) -> None:
        counts = [count(f"q-{d}", q, f"2026-10-{d}T12:00:00", "SRV-SUP") for d, q in (("05", "2"), ("23", "3"), ("27", "2"))]
        result = rate(observations=counts)
        assert table(result) == [("SRV-SUP", "recurring", "3", "85.00", "255.00")]
        assert result.lines[ALICE.account_id][0].quantity_rule == "snapshot(day=23)"

    def test_snapshot_carries_the_earlier_count_forward(self) -> None:
        counts = [count("q-sep", "18", "2026-09-23T12:00:00", "SRV-SUP"), count("q-oct", "20", "2026-10-25T12:00:00", "SRV-SUP")]
        assert table(rate(observations=counts)) == [("SRV-SUP", "recurring", "18", "85.00", "1530.00")]

    def test_snapshot_day_boundary_is_the_end_of_day_n(self) -> None:
        counts = [count("q-a", "4", "2026-10-23T23:59:59", "SRV-SUP"), count("q-b", "9", "2026-10-24T00:00:00", "SRV-SUP")]
        assert table(rate(observations=counts))[0][2] == "4"

    def test_peak(self) -> None:
        counts = [count(o, q, f"2026-10-{d}T00:00:00", "PEAK") for o, q, d in (("a", "3", "02"), ("b", "7", "09"), ("c", "5", "30"))]
        assert table(rate(observations=counts)) == [("PEAK", "recurring", "7", "2", "14")]

    def test_distinct_active_bills_any_item_alive_in_the_month_and_drops_deleted_ones_after(self) -> None:
        everyone = {f"m{i}": "active" for i in range(1, 11)}
        history = [
            items("o-sep", "2026-09-30T12:00:00", **everyone),
            items("o-oct12", "2026-10-12T12:00:00", m11="active"),
            items("o-oct20", "2026-10-20T12:00:00", m3="deleted"),
        ]
        assert table(rate(observations=history)) == [("MBX", "recurring", "11", "6.75", "74.25")]
        assert table(rate(Period.parse("2026-11"), observations=history)) == [("MBX", "recurring", "10", "6.75", "67.50")]

    def test_the_ordered_quantity_stands_in_until_a_count_and_next_period_waits(self) -> None:
        ordered = sub("s-1", "USR-SUP", "8", date(2026, 10, 14), "2026-10-14T10:00:00", first_period="next_period")
        assert rate(subscriptions=[ordered]).lines == {}
        assert table(rate(Period.parse("2026-11"), subscriptions=[ordered])) == [("USR-SUP", "recurring", "8", "35.00", "280.00")]
        november_count = count("q", "9", "2026-11-20T00:00:00")
        assert table(rate(Period.parse("2026-11"), subscriptions=[ordered], observations=[november_count]))[0][2] == "9"


class TestProration:
    def test_daily_bills_each_span_of_days_pro_rata(self) -> None:
        changes = (change("c1", "2026-10-16T10:00:00", date(2026, 10, 17), "14"),)
        s = sub("s-1", "EML-HST", "10", date(2026, 10, 1), "2026-09-20T00:00:00", changes=changes, proration="daily")
        lines = rate(subscriptions=[s]).lines[ALICE.account_id]
        assert [(line.quantity, line.service_period_start, line.service_period_end) for line in lines] == [
            (Decimal("10"), date(2026, 10, 1), date(2026, 10, 16)),
            (Decimal("14"), date(2026, 10, 17), date(2026, 10, 31)),
        ]
        # 10 × 6.75 × 16/31 + 14 × 6.75 × 15/31
        assert cents(rate(subscriptions=[s])) == Decimal("80.56")

    def test_daily_first_period_from_the_start_date_both_ends_inclusive(self) -> None:
        s = sub("s-1", "EML-HST", "4", date(2026, 10, 17), "2026-10-17T00:00:00", proration="daily")
        (line,) = rate(subscriptions=[s]).lines[ALICE.account_id]
        assert (line.quantity * line.unit_price.amount).quantize(Decimal("0.01")) == Decimal("13.06")  # 4 × 6.75 × 15/31
        assert line.amount.amount <= Decimal(4) * Decimal("6.75")

    def test_none_bills_a_cancelled_month_in_full(self) -> None:
        s = sub("s-1", "EML-HST", "4", date(2026, 8, 1), changes=(change("x", "2026-09-20T00:00:00", date(2026, 10, 1), None),))
        assert cents(rate(subscriptions=[s])) == Decimal("27.00")
        assert rate(Period.parse("2026-11"), subscriptions=[s]).lines == {}

    def test_advance_bills_the_next_month_and_a_pro_rata_addition_in_arrears(self) -> None:
        # BILLING-RULES example B: 10 users at 20.60, +4 on Oct 17: the run closing October bills
        # November's 14 in advance and 4 × 20.60 × 15/31 for October.
        PRICES["M365"] = {"model": "per_unit", "unit_price": "20.60"}
        PRODUCTS["M365"] = product("M365", timing="advance", proration="daily")
        try:
            changes = (change("c1", "2026-10-17T09:00:00", date(2026, 10, 17), "14"),)
            s = sub("s-1", "M365", "10", date(2026, 10, 1), "2026-09-25T09:00:00", changes=changes)
            september = rate(Period.parse("2026-09"), subscriptions=[s])
            assert table(september) == [("M365", "recurring", "10", "20.60", "206.00")]
            october = rate(subscriptions=[s]).lines[ALICE.account_id]
            assert [(line.service_period_start, line.quantity, line.amount.amount.quantize(Decimal("0.01"))) for line in october] == [
                (date(2026, 10, 17), Decimal("4"), Decimal("39.87")),
                (date(2026, 11, 1), Decimal("14"), Decimal("288.40")),
            ]
            assert all(line.timing == "advance" for line in october)
        finally:
            del PRICES["M365"], PRODUCTS["M365"]


class TestSetupAndTrueUp:
    def test_setup_fee_per_ordered_unit_in_the_order_period_unless_exempt(self) -> None:
        ordered = sub("s-1", "USR-SUP", "8", date(2026, 10, 14), "2026-10-14T10:00:00", first_period="next_period", setup_product="SETUP-CORE")
        assert table(rate(subscriptions=[ordered])) == [("SETUP-CORE", "one_time", "8", "25.00", "200.00")]
        assert table(rate(Period.parse("2026-11"), subscriptions=[ordered])) == [("USR-SUP", "recurring", "8", "35.00", "280.00")]
        exempt = sub("s-2", "USR-SUP", "8", date(2026, 10, 14), "2026-10-14T10:00:00", first_period="next_period", setup_product="SETUP-CORE", exempt=True)
        assert rate(subscriptions=[exempt]).lines == {}

    def test_true_up_example_d(self) -> None:
        PRODUCTS["USR-C"] = product("USR-C", true_up=True, first_period="next_period")
        PRICES["USR-C"] = PRICES["USR-SUP"]
        try:
            s = sub("s-1", "USR-C", "10", date(2026, 7, 6), "2026-07-06T10:00:00")
            counts = [count("q-oct", "12", "2026-10-30T12:00:00", "USR-C")]
            assert rate(Period.parse("2026-07"), subscriptions=[s], observations=counts).lines == {}
            for month in ("2026-08", "2026-09"):
                assert table(rate(Period.parse(month), subscriptions=[s], observations=counts)) == [("USR-C", "recurring", "10", "35.00", "350.00")]
            october = rate(subscriptions=[s], observations=counts)
            assert table(october) == [("USR-C", "recurring", "12", "35.00", "420.00"), ("USR-C", "true_up", "4", "35.00", "140.00")]
            assert cents(october) == Decimal("560.00")
            november = rate(Period.parse("2026-11"), subscriptions=[s], observations=counts)
            assert table(november) == [("USR-C", "recurring", "12", "35.00", "420.00")]  # actuals carry on, no second true-up
        finally:
            del PRODUCTS["USR-C"], PRICES["USR-C"]

    def test_no_refund_when_the_count_is_lower(self) -> None:
        PRODUCTS["USR-C"] = product("USR-C", true_up=True)
        PRICES["USR-C"] = PRICES["USR-SUP"]
        try:
            s = sub("s-1", "USR-C", "10", date(2026, 8, 1))
            assert table(rate(subscriptions=[s], observations=[count("q", "7", "2026-10-02T00:00:00", "USR-C")])) == [
                ("USR-C", "recurring", "7", "35.00", "245.00")
            ]
        finally:
            del PRODUCTS["USR-C"], PRICES["USR-C"]


class TestPricesAndTiers:
    def test_cost_plus_example_c(self) -> None:
        records = [
            usage("a1", "1", "2026-10-05T00:00:00", "AZURE", "1234.56"),
            usage("a2", "1", "2026-10-15T00:00:00", "AZURE", "789.01"),
            usage("a3", "1", "2026-10-25T00:00:00", "AZURE", "0.43"),
        ]
        result = rate(usage=records)
        assert table(result) == [("AZURE", "usage", "2024.00", "1.15", "2327.6000")]
        assert cents(result) == Decimal("2327.60")

    def test_cost_plus_without_a_cost_is_unrated(self) -> None:
        result = rate(usage=[usage("a1", "1", "2026-10-05T00:00:00", "AZURE")])
        assert result.unrated == (Unrated(ALICE.account_id, "AZURE", UnratedReason.NO_COST),) and result.lines == {}

    def test_markup_over_wholesale(self) -> None:
        base = parse_model({"model": "graduated", "tiers": [{"up_to": "10", "unit_price": "5"}, {"up_to": None, "unit_price": "4"}]})

        def retail(code: str, period: Period, currency: str) -> Price:
            return Price(PriceModel(PriceModelKind.MARKUP, markup_percent=Decimal("20")), "USD", base)

        result = rate_period(RUN, OCTOBER, buyers=[ALICE], products=PRODUCTS, price_of=retail, subscriptions=[sub("s", "EML-HST", "12", date(2026, 9, 1))])
        assert table(result) == [("EML-HST", "recurring", "10", "6.0", "60.0"), ("EML-HST", "recurring", "2", "4.8", "9.6")]

    def test_effective_dated_prices_follow_the_service_period(self) -> None:
        def dated(code: str, period: Period, currency: str) -> Price:
            unit = "6.75" if period.start < date(2026, 10, 1) else "7.00"
            return Price(parse_model({"model": "per_unit", "unit_price": unit}), "USD")

        s = sub("s", "EML-HST", "2", date(2026, 9, 1))
        months = (Period.parse("2026-09"), OCTOBER)
        totals = [cents(rate_period(RUN, m, buyers=[ALICE], products=PRODUCTS, price_of=dated, subscriptions=[s])) for m in months]
        assert totals == [Decimal("13.50"), Decimal("14.00")]

    def test_wholesale_lines_are_billed_to_the_partner_and_attributed_to_the_end_customer(self) -> None:
        partner = Buyer("acct-partner", "USD", "Northwind IT")
        result = rate_period(
            RUN, OCTOBER, buyers=[ALICE], products=PRODUCTS, price_of=price_of, bill_to=partner, observations=[count("q", "15", "2026-10-30T00:00:00")]
        )
        (line,) = result.lines[ALICE.account_id]
        assert (line.end_customer_id, line.end_customer_name, line.amount.amount) == (ALICE.account_id, "Alice Ltd", Decimal("525.00"))
        assert result.currencies == {ALICE.account_id: "USD"}


class TestDiscounts:
    def test_percentage_on_a_product_and_fixed_on_the_invoice_for_n_periods(self) -> None:
        discounts = [
            Discount("d-pct", "product", ALICE.account_id, "EML-HST", Decimal("10"), None, OCTOBER, 2),
            Discount("d-fix", "invoice", ALICE.account_id, None, None, Decimal("5.00"), OCTOBER, 1),
        ]
        subs = [sub("s", "EML-HST", "10", date(2026, 9, 1))]
        october = table(rate(subscriptions=subs, discounts=discounts))
        assert october == [
            ("EML-HST", "recurring", "10", "6.75", "67.50"),
            ("DISCOUNT", "discount", "1", "-5.00", "-5.00"),
            ("EML-HST", "discount", "1", "-6.75", "-6.75"),
        ]
        november = table(rate(Period.parse("2026-11"), subscriptions=subs, discounts=discounts))
        assert [row[4] for row in november] == ["67.50", "-6.75"]
        assert [row[4] for row in table(rate(Period.parse("2026-12"), subscriptions=subs, discounts=discounts))] == ["67.50"]

    def test_a_fixed_discount_never_exceeds_what_it_discounts(self) -> None:
        discounts = [Discount("d", "invoice", ALICE.account_id, None, None, Decimal("500"), OCTOBER, None)]
        assert cents(rate(subscriptions=[sub("s", "EML-HST", "1", date(2026, 9, 1))], discounts=discounts)) == Decimal("0.00")


class TestOneTimeKinds:
    def test_project_work_hours_times_rate_and_shipping_fees_keep_their_kind(self) -> None:
        PRODUCTS["PROJ"] = product("PROJ", QuantityRule.USAGE_SUM, "project_work")
        PRODUCTS["SHIP-2D"] = product("SHIP-2D", QuantityRule.USAGE_SUM, "shipping")
        PRICES["PROJ"], PRICES["SHIP-2D"] = {"model": "per_unit", "unit_price": "125.00"}, {"model": "per_unit", "unit_price": "89.25"}
        try:
            entries = [
                usage("p1", "2.5", "2026-10-03T20:00:00", "PROJ"),
                usage("p2", "1.25", "2026-10-04T21:00:00", "PROJ"),
                usage("s1", "1", "2026-10-09T10:00:00", "SHIP-2D"),
                usage("s2", "1", "2026-10-19T10:00:00", "SHIP-2D"),
            ]
            assert table(rate(usage=entries)) == [("PROJ", "project_work", "3.75", "125.00", "468.7500"), ("SHIP-2D", "shipping", "2", "89.25", "178.50")]
        finally:
            del PRODUCTS["PROJ"], PRODUCTS["SHIP-2D"], PRICES["PROJ"], PRICES["SHIP-2D"]


class TestUnrated:
    def test_unknown_product_unknown_price_and_other_currency(self) -> None:
        def usd_only(code: str, period: Period, currency: str) -> Price | None:
            if code == "EML-HST":
                return Price(parse_model(PRICES[code]), "EUR")
            return price_of(code, period) if code != "PEAK" else None

        result = rate_period(
            RUN,
            OCTOBER,
            buyers=[ALICE],
            products=PRODUCTS,
            price_of=usd_only,
            usage=[usage("u-1", "1", "2026-10-02T00:00:00", code="NOPE")],
            subscriptions=[sub("s-1", "EML-HST", "5", date(2026, 10, 1))],
            observations=[count("p", "3", "2026-10-02T00:00:00", "PEAK")],
        )
        assert result.lines == {}
        assert result.unrated == (
            Unrated(ALICE.account_id, "EML-HST", UnratedReason.CURRENCY_MISMATCH),
            Unrated(ALICE.account_id, "NOPE", UnratedReason.UNKNOWN_PRODUCT),
            Unrated(ALICE.account_id, "PEAK", UnratedReason.NO_PRICE),
        )
        assert result.billed_usage == ()

    def test_an_unknown_buyer_is_listed(self) -> None:
        result = rate(usage=[usage("u-1", "1", "2026-10-02T00:00:00", account="acct-ghost")])
        assert result.unrated == (Unrated("acct-ghost", "BKP-GB", UnratedReason.UNKNOWN_ACCOUNT),)

    def test_usage_for_a_contracted_product_is_flagged_and_the_contract_still_bills(self) -> None:
        result = rate(subscriptions=[sub("s-1", "EML-HST", "2", date(2026, 10, 1))], usage=[usage("u-1", "1", "2026-10-02T00:00:00", code="EML-HST")])
        assert table(result)[0][2] == "2"
        assert result.unrated == (Unrated(ALICE.account_id, "EML-HST", UnratedReason.RULE_MISMATCH),)


def test_lines_have_stable_ids() -> None:
    inputs: dict[str, Any] = {"usage": [usage("u-1", "1", "2026-10-02T00:00:00")], "observations": [count("q", "3", "2026-10-02T00:00:00")]}
    first, again = rate(**inputs), rate(**inputs)
    assert first == again
    ids = [line.line_id for line in first.lines[ALICE.account_id]]
    assert len(set(ids)) == 2
    other = rate_period("run-2", OCTOBER, buyers=[ALICE], products=PRODUCTS, price_of=price_of, **inputs)
    assert not set(ids) & {line.line_id for line in other.lines[ALICE.account_id]}


class TestYearlyInterval:
    def test_a_yearly_term_bills_once_in_arrears_at_its_last_month_or_in_advance_before_its_first(self) -> None:
        PRODUCTS["YEAR"] = product("YEAR", interval="year")
        PRICES["YEAR"] = {"model": "per_unit", "unit_price": "240.00"}
        try:
            arrears = sub("s-1", "YEAR", "2", date(2026, 2, 10), "2026-02-01T00:00:00")
            billed = {m: table(rate(Period.parse(m), subscriptions=[arrears])) for m in ("2026-02", "2026-12", "2027-01", "2028-01")}
            assert billed == {
                "2026-02": [],
                "2026-12": [],
                "2027-01": [("YEAR", "recurring", "2", "240.00", "480.00")],
                "2028-01": [("YEAR", "recurring", "2", "240.00", "480.00")],
            }
            (line,) = rate(Period.parse("2027-01"), subscriptions=[arrears]).lines[ALICE.account_id]
            assert (line.service_period_start, line.service_period_end) == (date(2026, 2, 1), date(2027, 1, 31))
            advance = sub("s-2", "YEAR", "1", date(2026, 3, 1), "2026-01-15T00:00:00", timing="advance")
            assert table(rate(Period.parse("2026-02"), subscriptions=[advance])) == [("YEAR", "recurring", "1", "240.00", "240.00")]
            assert table(rate(Period.parse("2026-03"), subscriptions=[advance])) == []
            assert len(table(rate(Period.parse("2027-02"), subscriptions=[advance]))) == 1
        finally:
            del PRODUCTS["YEAR"], PRICES["YEAR"]


class TestDistinctChargesHaveDistinctIds:
    """Every distinct charge of a run is its own line with its own id: the run's insert skips a
    line id already stored, so two charges sharing one would lose one of them (money not billed)."""

    def test_two_daily_subscriptions_starting_the_same_day_one_cancelled_mid_month(self) -> None:
        cancelled = sub(
            "s-1",
            "EML-HST",
            "4",
            date(2026, 10, 1),
            "2026-09-20T00:00:00",
            proration="daily",
            changes=(change("x", "2026-09-25T00:00:00", date(2026, 10, 15), None),),
        )
        running = sub("s-2", "EML-HST", "2", date(2026, 10, 1), "2026-09-20T00:00:00", proration="daily")
        lines = rate(subscriptions=[cancelled, running]).lines[ALICE.account_id]
        assert [(line.quantity, line.service_period_start, line.service_period_end) for line in lines] == [
            (Decimal("4"), date(2026, 10, 1), date(2026, 10, 15)),
            (Decimal("2"), date(2026, 10, 1), date(2026, 10, 31)),
        ]
        assert len({line.line_id for line in lines}) == 2
        # 4 × 6.75 × 15/31 + 2 × 6.75 = 13.06 + 13.50
        assert cents(rate(subscriptions=[cancelled, running])) == Decimal("26.56")
        # Stable: the same inputs give the same ids, in either order of the subscriptions.
        assert [line.line_id for line in rate(subscriptions=[running, cancelled]).lines[ALICE.account_id]] == [line.line_id for line in lines]

    def test_a_line_without_a_twin_keeps_the_id_it_always_had(self) -> None:
        from rating.billrun.rating import line_id

        running = sub("s-2", "EML-HST", "2", date(2026, 10, 1), "2026-09-20T00:00:00", proration="daily")
        (line,) = rate(subscriptions=[running]).lines[ALICE.account_id]
        assert line.line_id == line_id(RUN, ALICE.account_id, "EML-HST", "recurring", "2026-10-01", "", "0", "")

    def test_a_true_up_subscription_beside_a_plain_one_and_two_setup_fees_of_one_day(self) -> None:
        plain = sub("s-1", "EML-HST", "3", date(2026, 9, 1), "2026-10-14T10:00:00", setup_product="SETUP-CORE")
        counted = sub("s-2", "EML-HST", "5", date(2026, 9, 1), "2026-10-14T10:00:00", true_up=True, setup_product="SETUP-CORE")
        result = rate(subscriptions=[plain, counted], observations=[count("q-1", "5", "2026-10-10T00:00:00", "EML-HST")])
        lines = result.lines[ALICE.account_id]
        assert len({line.line_id for line in lines}) == len(lines)
        assert sorted(table(result)) == sorted(
            [
                ("EML-HST", "recurring", "3", "6.75", "20.25"),
                ("EML-HST", "recurring", "5", "6.75", "33.75"),
                ("SETUP-CORE", "one_time", "3", "25.00", "75.00"),
                ("SETUP-CORE", "one_time", "5", "25.00", "125.00"),
            ]
        )
