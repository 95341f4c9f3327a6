import json
import re
from decimal import Decimal

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from billing_events.money import DECIMAL_PATTERN, DecimalStr, Money

DECIMAL = TypeAdapter(DecimalStr)


class Line(BaseModel):
    quantity: DecimalStr
    price: Money


@pytest.mark.parametrize("text", ["1516.25", "0.10", "-52.50", "0", "2327.6000", "12345678901234567890.123456789"])
def test_money_round_trips_exactly_as_a_decimal_string(text: str) -> None:
    money = Money.of(text, "USD")
    wire = money.model_dump_json()
    assert json.loads(wire) == {"amount": text, "currency": "USD"}
    assert Money.model_validate_json(wire) == money
    assert Money.model_validate_json(wire).amount == Decimal(text)


def test_decimal_quantity_round_trips_inside_a_model() -> None:
    line = Line(quantity=Decimal("11"), price=Money.of("6.75", "USD"))
    wire = line.model_dump_json()
    assert json.loads(wire) == {"quantity": "11", "price": {"amount": "6.75", "currency": "USD"}}
    assert Line.model_validate_json(wire) == line


def test_exponent_decimals_are_written_plainly() -> None:
    assert DECIMAL.dump_json(Decimal("1E+3")) == b'"1000"'
    assert Money(amount=Decimal("2.5E-2"), currency="EUR").model_dump()["amount"] == "0.025"


def test_integers_are_accepted_as_exact() -> None:
    assert DECIMAL.validate_python(3) == Decimal(3)
    assert DECIMAL.validate_json("15") == Decimal(15)


def test_floats_are_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match="not floats"):
        Money(amount=0.1, currency="USD")
    with pytest.raises(ValidationError, match="not floats"):
        Money.of(0.1, "USD")  # type: ignore[arg-type]  # the wrong type, on purpose
    with pytest.raises(ValidationError, match="not floats"):
        Money.model_validate_json('{"amount": 1516.25, "currency": "USD"}')
    with pytest.raises(ValidationError, match="not floats"):
        DECIMAL.validate_json("1.5")


@pytest.mark.parametrize("text", ["", " ", "1e3", "NaN", "Infinity", "-", "1.", ".5", "1,50", "+1", "²", "١٢", "1 000"])
def test_non_plain_decimals_are_refused_as_validation_errors(text: str) -> None:
    # A validation error (a ValueError), never a decimal.InvalidOperation that escapes a consumer.
    with pytest.raises(ValidationError):
        Money.of(text, "EUR")


@pytest.mark.parametrize("currency", ["usd", "EURO", "US", "", "€"])
def test_currency_must_be_an_iso_4217_code(currency: str) -> None:
    with pytest.raises(ValidationError):
        Money.of("1.00", currency)


def test_arithmetic_stays_in_one_currency() -> None:
    assert Money.of("1079.25", "USD") + Money.of("437.00", "USD") == Money.of("1516.25", "USD")
    assert Money.of("1516.25", "USD") - Money.of("52.50", "USD") == Money.of("1463.75", "USD")
    with pytest.raises(ValueError, match="cannot combine USD and EUR"):
        Money.of("1", "USD") + Money.of("1", "EUR")


def test_json_schema_shows_strings_with_a_pattern() -> None:
    schema = Money.model_json_schema()
    assert schema["properties"]["amount"] == {"type": "string", "pattern": DECIMAL_PATTERN, "title": "Amount"}
    assert schema["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    assert DECIMAL.json_schema() == {"type": "string", "pattern": DECIMAL_PATTERN}


@pytest.mark.parametrize("text", ["0", "-0.00", "10.5", "1.", "1e3", "abc", "١٢", "-1.-1"])
def test_schema_pattern_agrees_with_the_validator(text: str) -> None:
    accepted_by_pattern = re.search(DECIMAL_PATTERN, text) is not None
    try:
        DECIMAL.validate_python(text)
        accepted_by_model = True
    except ValidationError:
        accepted_by_model = False
    assert accepted_by_pattern == accepted_by_model
