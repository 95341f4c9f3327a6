"""Per-currency rounding in one place (BILLING-RULES §6): ISO 4217 minor units, half up, once."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

from iso4217 import Currency

_CODE = re.compile(r"^[A-Z]{3}$")


class UnknownCurrency(ValueError):
    """Not an ISO 4217 currency with minor units (a typo, a withdrawn code, or gold/XDR/XXX)."""


@cache
def minor_units(currency: str) -> int:
    """Digits after the decimal point in `currency` (USD 2, JPY 0, KWD 3), from the ISO 4217 table."""
    if not isinstance(currency, str) or not _CODE.match(currency):
        raise UnknownCurrency(f"{currency!r} is not a three-letter ISO 4217 code")
    try:
        exponent = Currency(currency).exponent
    except ValueError:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency") from None
    if exponent is None:
        # Funds and metals (XAU, XDR, XXX) have no minor unit: nothing can be invoiced in them.
        raise UnknownCurrency(f"{currency!r} has no minor unit; it cannot be invoiced")
    return int(exponent)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half up to the minor unit of `currency`."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def money_str(amount: Decimal, currency: str) -> str:
    """A decimal string with exactly the currency's minor digits ("1516.25", "0.00", "1500")."""
    return format(round_money(amount, currency), "f")
