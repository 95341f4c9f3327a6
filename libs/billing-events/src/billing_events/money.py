"""Money and decimal quantities as they travel in events: decimal strings, never floats."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, StringConstraints, WithJsonSchema

# [0-9], not \d: in Python's re (and so in jsonschema) \d also matches non-ASCII digits.
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
_PLAIN_DECIMAL = re.compile(DECIMAL_PATTERN)


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, float):
        # A float has already lost the exact amount; refuse it rather than guess.
        raise ValueError("decimal values must be sent as strings, not floats")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)):
        text = str(value).strip()
        if not text or not _is_plain_decimal(text):
            raise ValueError("not a plain decimal number")
        result = Decimal(text)
    else:
        raise ValueError("expected a decimal string")
    if not result.is_finite():
        raise ValueError("decimal values must be finite")
    return result


def _is_plain_decimal(text: str) -> bool:
    # str.isdigit() accepts "²", which Decimal() rejects with an ArithmeticError, not a ValueError.
    return _PLAIN_DECIMAL.fullmatch(text) is not None


def _decimal_str(value: Decimal) -> str:
    return format(value, "f")


DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    PlainSerializer(_decimal_str, return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN}),
]
"""A Decimal that is read from and written to JSON as a plain decimal string."""

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class Money(BaseModel):
    """An exact amount in an ISO 4217 currency. `amount` is a decimal string on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: DecimalStr
    currency: CurrencyCode

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str) -> Money:
        # Through validation, so a float slipped past the type hints is refused here too.
        return cls.model_validate({"amount": amount, "currency": currency})

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")
