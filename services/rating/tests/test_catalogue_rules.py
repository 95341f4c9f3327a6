"""Price and currency rules of the catalogue, without a server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.catalogue.service import parse_currency, parse_price
from rating.errors import InvalidCurrency, InvalidPrice


@pytest.mark.parametrize(
    ("sent", "price"), [("35.00", Decimal("35.00")), ("0", Decimal("0")), (12, Decimal("12")), ("0.0035", Decimal("0.0035"))]
)
def test_prices_are_exact(sent: object, price: Decimal) -> None:
    parsed = parse_price(sent)  # type: ignore[arg-type]
    assert parsed == price and str(parsed) == str(price)


@pytest.mark.parametrize(
    "sent",
    [35.5, "-1.00", -1, "1e3", "abc", "", " ", "NaN", "Infinity", "1.", ".5", True, None, ["1"], "9" * 31, "0.12345678901"],
)
def test_bad_prices_are_invalid_price(sent: object) -> None:
    with pytest.raises(InvalidPrice):
        parse_price(sent)  # type: ignore[arg-type]


@pytest.mark.parametrize("sent", ["usd", "US", "USDD", "", 840, None])
def test_bad_currencies(sent: object) -> None:
    with pytest.raises(InvalidCurrency):
        parse_currency(sent)  # type: ignore[arg-type]
