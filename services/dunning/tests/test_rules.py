"""The pure rules of dunning: no server, no database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest

from billing_events import account_id, new_event
from billing_events.money import NotInMinorUnits
from billing_events.testing import example_invoice_issued
from dunning.case.service import amount_open, amount_paid, case_id, case_row, close_of, days_overdue, is_overdue, standing
from dunning.policy.schemas import PolicyIn, StepIn
from dunning.policy.service import InvalidPolicy, default_policy, due_steps, numbered, validate

DUE = date(2026, 12, 5)


class TestOpenAmount:
    def test_payments_reduce_the_total(self) -> None:
        paid = amount_paid("USD", [(Decimal("1000.00"), "USD"), (Decimal("16.25"), "USD")])
        assert amount_open(Decimal("1516.25"), paid, Decimal(0), "USD") == Decimal("500.00")

    def test_another_currency_is_not_mixed_in(self) -> None:
        assert amount_paid("USD", [(Decimal("100"), "EUR"), (Decimal("1"), "USD")]) == Decimal(1)

    def test_overpayment_leaves_nothing_open(self) -> None:
        assert str(amount_open(Decimal("1516.25"), Decimal("1600"), Decimal(0), "USD")) == "0.00"

    def test_credit_notes_reduce_it_like_payments(self) -> None:
        assert amount_open(Decimal("1516.25"), Decimal("1000.00"), Decimal("16.25"), "USD") == Decimal("500.00")
        assert str(amount_open(Decimal("100.00"), Decimal("60.00"), Decimal("50.00"), "USD")) == "0.00"

    def test_shown_in_the_decimals_of_the_currency_without_rounding(self) -> None:
        assert str(amount_open(Decimal("1516.25"), Decimal("1516.25"), Decimal(0), "USD")) == "0.00"
        assert str(amount_open(Decimal("1000"), Decimal("1000"), Decimal(0), "JPY")) == "0"
        assert str(amount_open(Decimal("150000"), Decimal("0"), Decimal(0), "PYG")) == "150000"
        assert str(amount_open(Decimal("2"), Decimal("0"), Decimal(0), "KWD")) == "2.000"
        with pytest.raises(NotInMinorUnits):
            amount_open(Decimal("1516.25"), Decimal("1.255"), Decimal(0), "USD")

    def test_no_payment_leaves_the_total(self) -> None:
        assert amount_open(Decimal("1516.25"), amount_paid("USD", []), Decimal(0), "USD") == Decimal("1516.25")


class TestDaysOverdue:
    @pytest.mark.parametrize(
        ("today", "expected"), [(date(2026, 12, 1), 0), (DUE, 0), (date(2026, 12, 6), 1), (date(2026, 12, 15), 10), (date(2027, 1, 5), 31)]
    )
    def test_counted_from_the_day_after_due(self, today: date, expected: int) -> None:
        assert days_overdue("open", DUE, today) == expected
        assert is_overdue("open", DUE, today) is (expected > 0)

    def test_a_closed_case_is_never_overdue(self) -> None:
        assert days_overdue("closed", DUE, date(2027, 1, 5)) == 0


def test_case_id_is_derived_from_the_invoice() -> None:
    assert case_id("inv-1") == case_id("inv-1") != case_id("inv-2")


def test_standing_sums_open_and_overdue_per_currency() -> None:
    def case(status: str, due_on: date, amount: str, currency: str = "USD") -> SimpleNamespace:
        return SimpleNamespace(status=status, due_on=due_on, amount_open=Decimal(amount), currency=currency)

    cases = [
        case("open", DUE, "500.00"),
        case("open", date(2027, 1, 5), "100.00"),
        case("open", DUE, "80.00", "EUR"),
        case("closed", DUE, "0"),
    ]
    result = standing("acc-1", cases, date(2026, 12, 15))
    assert (result.open_cases, result.overdue_cases) == (3, 2)
    assert result.amount_open == {"USD": Decimal("600.00"), "EUR": Decimal("80.00")}
    assert result.amount_overdue == {"USD": Decimal("500.00"), "EUR": Decimal("80.00")}
    assert standing("acc-2", [], date(2026, 12, 15)).open_cases == 0


def test_case_row_opens_with_the_whole_total() -> None:
    data = example_invoice_issued("northwind", "inv-1", number="NW-7")
    row = case_row(new_event(data, source="invoicing", tenant="northwind"))
    assert (row["case_id"], row["tenant"], row["account_id"], row["status"]) == (case_id("inv-1"), "northwind", account_id("northwind", "c-1"), "open")
    assert row["amount_open"] == row["total"] == Decimal("1516.25")


class TestPolicySteps:
    def test_default_is_remind_retry_remind_final_notice_suspend(self) -> None:
        policy = default_policy("p")
        assert [(s.step, s.days_after_due, s.action) for s in policy.steps] == [
            (1, 1, "remind"),
            (2, 7, "retry"),
            (3, 7, "remind"),
            (4, 14, "final_notice"),
            (5, 21, "suspend"),
        ]

    def test_steps_fire_by_day_and_same_day_steps_keep_their_order(self) -> None:
        steps = numbered([(10, "suspend"), (3, "retry"), (3, "remind")])
        assert [(s.step, s.days_after_due, s.action) for s in steps] == [(1, 3, "retry"), (2, 3, "remind"), (3, 10, "suspend")]

    @pytest.mark.parametrize(("days", "expected"), [(0, []), (1, [1]), (6, [1]), (7, [1, 2, 3]), (20, [1, 2, 3, 4]), (21, [1, 2, 3, 4, 5])])
    def test_due_steps_catch_up_in_order(self, days: int, expected: list[int]) -> None:
        assert [s.step for s in due_steps(default_policy("p"), days, set())] == expected

    def test_a_reached_step_is_not_due_again(self) -> None:
        assert [s.step for s in due_steps(default_policy("p"), 7, {(1, "remind"), (7, "retry")})] == [3]

    def test_refused_policies(self) -> None:
        twice = PolicyIn(steps=[StepIn(days_after_due=2, action="remind"), StepIn(days_after_due=2, action="remind")])
        with pytest.raises(InvalidPolicy):
            validate("p", twice)
        cascade = PolicyIn(steps=[StepIn(days_after_due=2, action="suspend")], cascade_to_customers=True)
        with pytest.raises(InvalidPolicy):
            validate("partner-a", cascade)
        assert validate("distributor", cascade) == [(2, "suspend")]


class TestClosing:
    def test_settlement_decides_first(self) -> None:
        assert close_of(Decimal("100"), Decimal("0"), Decimal("0"), date(2026, 12, 9), [], []) == ("paid", date(2026, 12, 9))

    def test_payments_covering_the_total_close_as_paid_on_the_last_payment(self) -> None:
        payments = [SimpleNamespace(paid_on=date(2026, 12, 3)), SimpleNamespace(paid_on=date(2026, 12, 8))]
        assert close_of(Decimal("100"), Decimal("100"), Decimal("0"), None, payments, []) == ("paid", date(2026, 12, 8))

    def test_a_credit_note_clearing_the_rest_closes_as_credited(self) -> None:
        payments, credits = [SimpleNamespace(paid_on=date(2026, 12, 3))], [SimpleNamespace(issued_on=date(2026, 12, 5))]
        assert close_of(Decimal("100"), Decimal("40"), Decimal("60"), None, payments, credits) == ("credited", date(2026, 12, 5))

    def test_something_still_owed_keeps_the_case_open(self) -> None:
        assert close_of(Decimal("100"), Decimal("40"), Decimal("59.99"), None, [SimpleNamespace(paid_on=DUE)], []) is None
