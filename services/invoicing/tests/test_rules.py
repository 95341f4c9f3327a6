"""The pure rules: due dates, numbering, drafts. No servers. (Rounding to minor units is
billing_events.money, tested in libs/billing-events/tests/test_minor_units.py.)"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from invoicing_testkit import example_a_lines, period_closed, rated

from billing_events import PeriodClosed
from invoicing.invoice.service import InvalidPeriodClosed, build_draft, invoice_id_for, period_description
from invoicing.numbering.service import format_number
from invoicing.seller.schemas import DayOfNextMonth, NetDays
from invoicing.seller.service import default_prefix, due_date
from invoicing.tax.engine import BuyerTax, Scheme, SellerTax


class TestDueDate:
    def test_net_days(self) -> None:
        assert due_date(date(2026, 11, 2), NetDays(net_days=30)) == date(2026, 12, 2)
        assert due_date(date(2026, 12, 15), NetDays(net_days=30)) == date(2027, 1, 14)
        assert due_date(date(2026, 11, 2), NetDays(net_days=0)) == date(2026, 11, 2)

    def test_day_of_next_month_worked_example_a(self) -> None:
        assert due_date(date(2026, 11, 2), DayOfNextMonth(day_of_next_month=5)) == date(2026, 12, 5)

    def test_day_of_next_month_crosses_the_year(self) -> None:
        assert due_date(date(2026, 12, 31), DayOfNextMonth(day_of_next_month=5)) == date(2027, 1, 5)
        assert due_date(date(2026, 12, 1), DayOfNextMonth(day_of_next_month=5)) == date(2027, 1, 5)

    def test_day_past_the_end_of_a_short_month_is_its_last_day(self) -> None:
        assert due_date(date(2027, 1, 10), DayOfNextMonth(day_of_next_month=31)) == date(2027, 2, 28)
        assert due_date(date(2028, 1, 10), DayOfNextMonth(day_of_next_month=30)) == date(2028, 2, 29)


class TestNumbering:
    def test_format(self) -> None:
        assert format_number("NW", 1) == "NW-000001"
        assert format_number("NW", 999999) == "NW-999999"
        assert format_number("A1", 1234567) == "A1-1234567"

    def test_default_prefix_from_the_seller_id(self) -> None:
        assert default_prefix("northwind-it") == "NORTHWINDI"
        assert default_prefix("nw-2") == "NW2"


class TestDraft:
    def test_worked_example_a_to_the_cent(self) -> None:
        # A US distributor billing a US partner: outside the scope of EU and UK VAT.
        draft = build_draft(period_closed("distributor", "acct-northwind", example_a_lines()), SellerTax("US"), BuyerTax("US"))
        assert [line.net for line in draft.lines] == [Decimal(x) for x in ("525.00", "255.00", "225.00", "74.25", "200.00", "94.50", "90.00", "52.50")]
        assert (draft.net_total, draft.tax_total, draft.total) == (Decimal("1516.25"), Decimal("0.00"), Decimal("1516.25"))
        assert [(b.tax_category, b.rate, b.taxable.amount, b.tax.amount) for b in draft.breakdown] == [("O", Decimal(0), Decimal("1516.25"), Decimal("0.00"))]
        assert {line.tax.scheme for line in draft.lines} == {Scheme.OUTSIDE_SCOPE}

    def test_each_line_is_rounded_once_then_summed(self) -> None:
        # 3 × 0.125 would be 0.375 → 0.38 if summed first; rounded per line it is 3 × 0.13.
        lines = [rated(f"l{i}", "X", "1", "0.125") for i in range(3)]
        draft = build_draft(period_closed("s", "b", lines))
        assert draft.net_total == Decimal("0.39")

    def test_prorated_amount_is_rounded_from_ratings_exact_figure(self) -> None:
        # Worked example B: 4 × 20.60 × 15/31.
        exact = Decimal("4") * Decimal("20.60") * Decimal(15) / Decimal(31)
        draft = build_draft(period_closed("s", "b", [rated("l1", "M365-BP", "4", "20.60", "EUR", amount=str(exact))], currency="EUR"))
        assert draft.lines[0].net == Decimal("39.87")

    def test_jpy_and_kwd(self) -> None:
        jpy = build_draft(period_closed("s", "b", [rated("l1", "X", "3", "333.5", "JPY")], currency="JPY"))
        assert jpy.total == Decimal("1001")  # 1000.5 half up
        kwd = build_draft(period_closed("s", "b", [rated("l1", "X", "1", "1.2345", "KWD")], currency="KWD"))
        assert kwd.total == Decimal("1.235")

    @pytest.mark.parametrize(
        ("closed", "message"),
        [
            (period_closed("s", "b", [rated("l1", "X", "1", "1", "ZZZ")], currency="ZZZ"), "unknown_currency: .*ISO 4217"),
            (period_closed("s", "b", [rated("l1", "X", "1", "1", "EUR")], currency="USD"), "in EUR"),
            (period_closed("s", "b", [rated("l1", "X", "1", "1"), rated("l1", "Y", "1", "1")]), "twice"),
            (period_closed("s", "b", [rated("l1", "X", "1", "1")], start=date(2026, 10, 31), end=date(2026, 10, 1)), "before"),
        ],
    )
    def test_poison(self, closed: PeriodClosed, message: str) -> None:
        with pytest.raises(InvalidPeriodClosed, match=message):
            build_draft(closed)


def test_period_description() -> None:
    assert period_description(date(2026, 10, 1), date(2026, 10, 31)) == "Services October 2026"
    assert period_description(date(2026, 2, 1), date(2026, 2, 28)) == "Services February 2026"
    assert period_description(date(2026, 10, 1), date(2026, 10, 30)) == "Services 2026-10-01 to 2026-10-30"


def test_invoice_id_is_fixed_by_seller_buyer_and_period() -> None:
    a = invoice_id_for("s", "b", date(2026, 10, 1), date(2026, 10, 31))
    assert a == invoice_id_for("s", "b", date(2026, 10, 1), date(2026, 10, 31))
    assert a != invoice_id_for("s", "b", date(2026, 11, 1), date(2026, 11, 30))
    assert a != invoice_id_for("s2", "b", date(2026, 10, 1), date(2026, 10, 31))
