"""Minor units per ISO 4217, the one rounding rule, to/from integer minor units, the open amount."""

from __future__ import annotations

from decimal import Decimal

import iso4217
import pytest

from billing_events import money
from billing_events.money import (
    MINOR_UNITS,
    NotInMinorUnits,
    UnknownCurrency,
    fits_minor_units,
    from_minor,
    minor_units,
    money_str,
    open_amount,
    quantize,
    quantum,
    round_half_up,
    to_minor,
)

ALL = sorted(MINOR_UNITS)


def test_the_table_is_iso_4217_list_one() -> None:
    # Checked against ISO 4217 List One (SIX, published 2026-01-01), column "Minor unit".
    assert money.ISO_4217_PUBLISHED == iso4217.__published__
    assert [minor_units(c) for c in ("PYG", "UGX", "XPF", "CLF", "UYW", "JPY", "KRW", "KWD", "BHD", "TND")] == [0, 0, 0, 4, 4, 0, 0, 3, 3, 3]
    assert [minor_units(c) for c in ("USD", "EUR", "GBP", "CHF", "MGA", "MRU", "XCG", "ZWG", "SLE", "VES")] == [2] * 10
    # The eleven currencies payments' deleted table wrote with two decimals, against ISO 4217.
    wrong = ("CLF", "DJF", "GNF", "KMF", "PYG", "RWF", "UGX", "UYI", "UYW", "VUV", "XPF")
    assert [minor_units(c) for c in wrong] == [4, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0]
    # Every ISO 4217 entry with a minor unit is in the table; those without (metals, XDR, XXX) are not.
    assert set(MINOR_UNITS) == {c.code for c in iso4217.Currency if c.exponent is not None}
    assert not {"XAU", "XAG", "XDR", "XXX", "XTS", "XSU", "XUA"} & set(MINOR_UNITS)


@pytest.mark.parametrize("currency", ALL)
def test_every_iso_4217_currency_round_trips_through_minor_units(currency: str) -> None:
    digits = minor_units(currency)
    smallest = quantum(currency)
    assert smallest == Decimal(1).scaleb(-digits)
    for units in (0, 1, 7, 100, 16359, 10**18 + 1, -1, -16359):
        amount = from_minor(units, currency)
        assert amount.as_tuple().exponent == -digits
        assert to_minor(amount, currency) == units
        assert quantize(amount, currency) == amount
        assert money_str(amount, currency) == format(amount, "f")
        assert fits_minor_units(amount, currency)
    # Quantize writes exactly the currency's decimals and never rounds.
    assert money_str(Decimal(2), currency) == ("2" if digits == 0 else "2." + "0" * digits)
    padded = from_minor(16359, currency).quantize(Decimal(1).scaleb(-digits - 3))  # 163.59000 USD
    assert quantize(padded, currency).as_tuple() == from_minor(16359, currency).as_tuple()
    finer = smallest / 2
    assert not fits_minor_units(finer, currency)
    with pytest.raises(NotInMinorUnits):
        quantize(finer, currency)
    with pytest.raises(NotInMinorUnits):
        to_minor(Decimal(1) + finer, currency)
    # The one rounding: half up, away from zero on a tie.
    assert round_half_up(Decimal(1) + finer, currency) == Decimal(1) + smallest
    assert round_half_up(-(Decimal(1) + finer), currency) == -(Decimal(1) + smallest)
    assert round_half_up(Decimal(1) + finer - finer / 1000, currency) == quantize(Decimal(1), currency)


def test_half_up_not_bankers() -> None:
    assert round_half_up(Decimal("0.125"), "USD") == Decimal("0.13")
    assert round_half_up(Decimal("0.135"), "EUR") == Decimal("0.14")
    assert round_half_up(Decimal("-0.125"), "USD") == Decimal("-0.13")
    assert round_half_up(Decimal("0.1249999"), "USD") == Decimal("0.12")
    assert round_half_up(Decimal("1234.5"), "JPY") == Decimal("1235")
    assert round_half_up(Decimal("1.2345"), "KWD") == Decimal("1.235")
    assert round_half_up(Decimal("2.5"), "PYG") == Decimal("3")  # 2.50 under payments' old table


def test_providers_get_integers() -> None:
    assert (to_minor(Decimal("163.59"), "EUR"), to_minor(Decimal("1500"), "JPY"), to_minor(Decimal("1.2"), "KWD")) == (16359, 1500, 1200)
    assert (to_minor(Decimal("150000"), "PYG"), to_minor(Decimal("1.2345"), "CLF")) == (150000, 12345)
    assert (from_minor(16359, "EUR"), from_minor(150000, "PYG"), from_minor(12345, "CLF")) == (Decimal("163.59"), Decimal(150000), Decimal("1.2345"))
    assert str(from_minor(0, "USD")) == "0.00"
    # Exact beyond the default 28-digit decimal context.
    assert to_minor(Decimal("12345678901234567890123456789.12"), "USD") == 1234567890123456789012345678912


@pytest.mark.parametrize("value", [1.5, "1.50", True, None])
def test_floats_and_strings_are_not_amounts(value: object) -> None:
    with pytest.raises(TypeError):
        to_minor(value, "USD")  # type: ignore[arg-type]  # the wrong type, on purpose
    with pytest.raises(TypeError):
        from_minor(value, "USD")  # type: ignore[arg-type]  # the wrong type, on purpose


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_amounts_are_refused(value: Decimal) -> None:
    with pytest.raises(NotInMinorUnits) as caught:
        quantize(value, "USD")
    assert caught.value.code == "amount_not_in_minor_units"
    assert not fits_minor_units(value, "USD")


@pytest.mark.parametrize("code", ["ZZZ", "usd", "US", "EURO", "XAU", "XDR", "XXX", "XTS", "DEM", "HRK", "BGN", "", None, 840])
def test_an_unknown_currency_is_a_clear_error_with_a_stable_code(code: object) -> None:
    with pytest.raises(UnknownCurrency) as caught:
        minor_units(code)  # type: ignore[arg-type]  # the wrong type, on purpose
    assert caught.value.code == "unknown_currency"
    assert isinstance(caught.value, ValueError)
    with pytest.raises(UnknownCurrency):
        to_minor(Decimal(1), code)  # type: ignore[arg-type]  # the wrong type, on purpose
    with pytest.raises(UnknownCurrency):
        round_half_up(Decimal(1), code)  # type: ignore[arg-type]  # the wrong type, on purpose
    assert not fits_minor_units(Decimal(1), code)  # type: ignore[arg-type]  # the wrong type, on purpose


def test_open_amount_is_total_less_paid_less_credited() -> None:
    assert open_amount(Decimal("1516.25"), Decimal("0"), Decimal("0")) == Decimal("1516.25")
    assert open_amount(Decimal("1516.25"), Decimal("1000.00"), Decimal("16.25")) == Decimal("500.00")
    assert open_amount(Decimal("126.69"), Decimal("126.69"), Decimal("0")) == 0
    assert open_amount(Decimal("163.59"), Decimal("327.18"), Decimal("0")) == Decimal("-163.59")  # a surplus of 163.59
    assert open_amount(Decimal("100.00"), Decimal("60.00"), Decimal("50.00")) == Decimal("-10.00")
