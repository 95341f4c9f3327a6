"""The effective-dated VAT rate table (BILLING-RULES §5): rates are data, chosen by date.

Seeded from two packages, each used for what it is good at:

- `duty27-eu-vat`: the standard rate of every EU member state as dated windows since 2016
  (Duty27, CC BY 4.0). This is what makes Finland 24 → 25.5 on 2024-09-01, Estonia 22 → 24 on
  2025-07-01, Romania 19 → 21 on 2025-08-01 and Slovakia 20 → 23 on 2025-01-01 land on the right day.
- `eu-vat-rates-data`: today's rates for the EU from the Commission's TEDB plus GB, NO, CH (no
  dates). Used to cross-check the EU windows in the tests and for the current GB rate.

The United Kingdom's standard rate has been 20% since 4 January 2011 (Finance (No. 2) Act 2010,
s. 3; 15% from 1 December 2008 to 31 December 2009; HMRC "VAT rates", gov.uk/guidance/rates-of-vat-on-different-goods-and-services), 17.5%
before; that window is kept here in `_EXTRA_WINDOWS` with its source.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache

import duty27_eu_vat

# ISO 3166 country code → the code EU VAT uses for it (Greece is EL in VAT, GR everywhere else).
_VAT_CODE = {"GR": "EL"}
EU_MEMBER_STATES = frozenset(c.code if c.code != "EL" else "GR" for c in duty27_eu_vat.list_countries())

# Non-EU standard rates we determine tax for, as (first day, rate) windows, with sources above.
_EXTRA_WINDOWS: Mapping[str, tuple[tuple[date, Decimal], ...]] = {
    "GB": (
        (date(1991, 4, 1), Decimal("17.5")),
        (date(2008, 12, 1), Decimal("15")),
        (date(2010, 1, 1), Decimal("17.5")),
        (date(2011, 1, 4), Decimal("20")),
    ),
}


class RateNotFound(LookupError):
    """No rate is known for this country on this day: better refused than guessed."""


@dataclass(frozen=True)
class RateWindow:
    country: str
    effective_from: date
    rate: Decimal
    source: str


class RateTable:
    """Standard VAT rates per country as effective-dated windows: a window runs until the next starts."""

    def __init__(self, windows: Iterable[RateWindow]) -> None:
        by_country: dict[str, list[RateWindow]] = {}
        for window in windows:
            by_country.setdefault(window.country, []).append(window)
        self._windows = {country: sorted(ws, key=lambda w: w.effective_from) for country, ws in by_country.items()}

    def countries(self) -> list[str]:
        return sorted(self._windows)

    def history(self, country: str) -> list[RateWindow]:
        return list(self._windows.get(country, ()))

    def window(self, country: str, on: date) -> RateWindow:
        windows = self._windows.get(country)
        if not windows:
            raise RateNotFound(f"no VAT rates are known for country {country!r}")
        index = bisect_right([w.effective_from for w in windows], on) - 1
        if index < 0:
            raise RateNotFound(f"no {country} VAT rate is known for {on} (data starts {windows[0].effective_from})")
        return windows[index]

    def standard_rate(self, country: str, on: date) -> Decimal:
        """The standard rate in percent in force in `country` on `on`."""
        return self.window(country, on).rate


def vat_country_code(iso_country: str) -> str:
    return _VAT_CODE.get(iso_country, iso_country)


def _package_windows() -> list[RateWindow]:
    windows: list[RateWindow] = []
    for country in duty27_eu_vat.list_countries():
        iso = "GR" if country.code == "EL" else country.code
        windows.extend(RateWindow(iso, w.effective_from, w.rate, "duty27-eu-vat") for w in duty27_eu_vat.get_rate_history(country.code))
    for iso, extra in _EXTRA_WINDOWS.items():
        windows.extend(RateWindow(iso, start, rate, "HMRC") for start, rate in extra)
    return windows


@cache
def default_rate_table() -> RateTable:
    return RateTable(_package_windows())
