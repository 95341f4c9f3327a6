"""Money for the whole platform: amounts and decimal quantities as they travel in events (decimal
strings, never floats), and the one place where amounts meet their currency's minor unit (ISO 4217),
are rounded (half up, once), converted to and from integer minor units, and the open amount of an
invoice is computed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation, Overflow
from types import MappingProxyType
from typing import Annotated

import iso4217
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

DecimalText = Annotated[str, StringConstraints(pattern=DECIMAL_PATTERN)]
"""An answer's decimal string as already formatted (e.g. by `money_str`, with the currency's
digits): `DecimalStr`'s schema, passed through as it is (not parsed again)."""

CURRENCY_PATTERN = r"^[A-Z]{3}$"
_CURRENCY = re.compile(CURRENCY_PATTERN)

CurrencyCode = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)]


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


# --- Minor units: the platform's one table and the one rounding rule ------------------------------
#
# ISO 4217 (List One, "Current currency & funds", published by its maintenance agency, SIX) gives
# each currency its minor unit: the number of decimals an amount in it may have (USD 2, JPY 0,
# KWD 3, CLF 4). The `iso4217` package ships that list as published (its `__published__` date);
# MINOR_UNITS is read from it once, here, and nowhere else in the platform. Funds and metals whose
# minor unit is "N.A." (XAU, XDR, XXX, ...) are not in it: nothing can be billed in them.


class CurrencyError(ValueError):
    """An amount or a currency the money rules cannot apply to. `code` is stable (for problem+json)."""

    code = "invalid_money"


class UnknownCurrency(CurrencyError):
    """Not an active ISO 4217 currency with a minor unit (a typo, a withdrawn code, gold, XDR, XXX)."""

    code = "unknown_currency"


class NotInMinorUnits(CurrencyError):
    """An amount finer than its currency's minor unit (1.255 USD, 1.5 JPY), or not a finite amount."""

    code = "amount_not_in_minor_units"


MINOR_UNITS: Mapping[str, int] = MappingProxyType({c.code: int(c.exponent) for c in iso4217.Currency if c.exponent is not None})
"""ISO 4217 currency code → its minor unit (decimals), for every active currency that has one."""

ISO_4217_PUBLISHED: date = iso4217.__published__
"""The date of the ISO 4217 list MINOR_UNITS was read from."""

# Wide enough that quantizing any stored amount never runs out of digits; Inexact is trapped so a
# conversion that would lose a digit raises instead of rounding silently.
_EXACT = Context(prec=100, rounding=ROUND_HALF_UP, traps=[Inexact, InvalidOperation, Overflow])
_WIDE = Context(prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])


def minor_units(currency: str) -> int:
    """Decimals of `currency` per ISO 4217 (USD 2, JPY 0, KWD 3); UnknownCurrency if it has none."""
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise UnknownCurrency(f"{currency!r} is not a three-letter ISO 4217 code")
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrency(f"{currency!r} is not an active ISO 4217 currency with a minor unit") from None


def quantum(currency: str) -> Decimal:
    """The smallest amount of `currency`: 0.01 USD, 1 JPY, 0.001 KWD."""
    return Decimal(1).scaleb(-minor_units(currency))


def _amount(amount: Decimal | int) -> Decimal:
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int)):
        raise TypeError(f"amounts are Decimal or int, not {type(amount).__name__}")
    result = Decimal(amount)
    if not result.is_finite():
        raise NotInMinorUnits(f"{result} is not an amount")
    return result


def fits_minor_units(amount: Decimal | int, currency: str) -> bool:
    """True when `amount` is a finite amount with no more decimals than `currency` has (1.250 USD
    fits, 1.255 USD and 1.5 JPY do not); False for a currency that is not in MINOR_UNITS."""
    if currency not in MINOR_UNITS:
        return False
    try:
        quantize(amount, currency)
    except NotInMinorUnits:
        return False
    return True


def quantize(amount: Decimal | int, currency: str) -> Decimal:
    """`amount` written with exactly the currency's decimals (2 → "2.00" USD, "2.000" KWD).
    Exact: NotInMinorUnits when that would drop a non-zero digit. Rounding is `round_half_up`."""
    value = _amount(amount)
    try:
        return value.quantize(quantum(currency), context=_EXACT)
    except Inexact:
        raise NotInMinorUnits(f"{value} {currency} is finer than {currency}'s {minor_units(currency)} decimals") from None


def round_half_up(amount: Decimal | int, currency: str) -> Decimal:
    """`amount` rounded half up (away from zero on a tie: 0.125 → 0.13, -0.125 → -0.13) to the
    currency's minor unit. BILLING-RULES §6: applied once, to each line net and to the VAT of each
    rate; every other amount is a sum of rounded amounts and goes through `quantize`."""
    return _amount(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP, context=_WIDE)


def to_minor(amount: Decimal | int, currency: str) -> int:
    """`amount` as an integer count of ISO 4217 minor units, as providers want it (163.59 EUR →
    16359, 1500 JPY → 1500, 1.234 KWD → 1234). Exact: NotInMinorUnits rather than rounding.
    A provider whose API counts a currency otherwise adapts this number itself (payments:
    `providers.gateways.provider_units`, for Stripe's ISK and MGA)."""
    return int(quantize(amount, currency).scaleb(minor_units(currency), context=_EXACT))


def from_minor(units: int, currency: str) -> Decimal:
    """An integer count of minor units as an amount with the currency's decimals (16359 EUR → 163.59)."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError(f"minor units are an int, not {type(units).__name__}")
    return Decimal(units).scaleb(-minor_units(currency), context=_EXACT)


def money_str(amount: Decimal | int, currency: str) -> str:
    """A plain decimal string with exactly the currency's decimals ("1516.25", "0.00", "1500")."""
    return format(quantize(amount, currency), "f")


def open_amount(total: Decimal, paid: Decimal, credited: Decimal) -> Decimal:
    """What an invoice still asks: total − paid − credited (credited as a positive amount). The one
    definition of "open amount"; negative when more was received than the invoice now asks (that
    surplus is `-open_amount(...)`), so a caller that shows or collects it takes `max(..., 0)`."""
    return _WIDE.subtract(_WIDE.subtract(_amount(total), _amount(paid)), _amount(credited))
