"""Amounts as finance enters them and as this service shows them."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor units where they are not 2. A payment cannot be finer than the currency.
_MINOR_UNITS = {"BIF": 0, "CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "VND": 0, "XAF": 0, "XOF": 0,
                "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}


def minor_units(currency: str) -> int:
    return _MINOR_UNITS.get(currency, 2)


def at_minor_units(amount: Decimal, currency: str) -> Decimal:
    """`amount` written with exactly the currency's decimals (exact: no rounding is implied)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def fits_currency(amount: Decimal, currency: str) -> bool:
    exponent = amount.normalize().as_tuple().exponent
    return isinstance(exponent, int) and -exponent <= minor_units(currency)


def show(amount: Decimal) -> str:
    return format(amount, "f")
