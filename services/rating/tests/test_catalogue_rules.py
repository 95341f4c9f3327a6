"""Price and currency rules of the catalogue, without a server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.billrun.rating import Price
from rating.catalogue.service import parse_currency, parse_price
from rating.errors import InvalidCurrency, InvalidPrice


@pytest.mark.parametrize(("sent", "price"), [("35.00", Decimal("35.00")), ("0", Decimal("0")), (12, Decimal("12")), ("0.0035", Decimal("0.0035"))])
def test_prices_are_exact(sent: object, price: Decimal) -> None:
    parsed = parse_price(sent)  # type: ignore[arg-type]  # any JSON value, on purpose
    assert parsed == price and str(parsed) == str(price)


@pytest.mark.parametrize(
    "sent",
    [35.5, "-1.00", -1, "1e3", "abc", "", " ", "NaN", "Infinity", "1.", ".5", True, None, ["1"], "9" * 31, "0.12345678901"],
)
def test_bad_prices_are_invalid_price(sent: object) -> None:
    with pytest.raises(InvalidPrice):
        parse_price(sent)  # type: ignore[arg-type]  # any JSON value, on purpose


@pytest.mark.parametrize("sent", ["usd", "US", "USDD", "", 840, None])
def test_bad_currencies(sent: object) -> None:
    with pytest.raises(InvalidCurrency):
        parse_currency(sent)  # type: ignore[arg-type]  # any JSON value, on purpose


def test_a_price_book_finds_the_price_in_the_buyers_currency_and_marks_up_wholesale_in_it() -> None:
    """One list per currency (the distributor's wholesale and a partner's own), a markup over
    wholesale in the buyer's currency, and a price in another currency only for the report."""
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    from rating.catalogue.service import PriceBook
    from rating.period import Period

    def product(seller: str, code: str) -> SimpleNamespace:
        return SimpleNamespace(
            seller_id=seller,
            code=code,
            name=code,
            category=None,
            unit=None,
            tax_category=None,
            kind="recurring",
            quantity_rule="contracted",
            policy=None,
            unit_price=None,
            currency=None,
        )

    def price(seller: str, code: str, currency: str, model: dict[str, str], on: date = date(2026, 1, 1)) -> SimpleNamespace:
        return SimpleNamespace(
            seller_id=seller, product_code=code, effective_from=on, currency=currency, model=model, updated_at=datetime(2026, 1, 1, tzinfo=UTC)
        )

    unit = {"model": "per_unit", "unit_price": "10.00"}
    book = PriceBook(
        "p",
        "d",
        [product("d", "M365"), product("d", "SUP")],
        [
            price("d", "M365", "EUR", {"model": "per_unit", "unit_price": "10.00"}),
            price("d", "M365", "USD", {"model": "per_unit", "unit_price": "11.00"}),
            price("d", "SUP", "EUR", unit),
            price("p", "*", "", {"model": "markup", "markup_percent": "20"}),
            price("p", "M365", "USD", {"model": "per_unit", "unit_price": "12.50"}, date(2026, 10, 1)),
        ],
    )
    october, september = Period.parse("2026-10"), Period.parse("2026-09")

    def unit_price(found: Price | None) -> tuple[str, Decimal]:
        assert found is not None
        segment = found.model.segments(Decimal(1), None, found.base)[0]
        return found.currency, segment.unit_price

    assert unit_price(book.retail("M365", september, "EUR")) == ("EUR", Decimal("12.0000"))  # 10.00 + 20 %
    assert unit_price(book.retail("M365", september, "USD")) == ("USD", Decimal("13.2000"))  # 11.00 + 20 %
    assert unit_price(book.retail("M365", october, "USD")) == ("USD", Decimal("12.50"))  # its own USD entry from October
    assert unit_price(book.wholesale("M365", october, "USD")) == ("USD", Decimal("11.00"))
    # SUP has no USD wholesale price: rating sees the EUR one and reports currency_mismatch.
    sup = book.retail("SUP", october, "USD")
    assert sup is not None and sup.currency == "EUR"
    assert not book.priced_in("SUP", october, "USD") and book.priced_in("SUP", october, "EUR")
    assert book.retail("NOPE", october, "USD") is None
