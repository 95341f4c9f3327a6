"""Business days in the seller's country (BILLING-RULES §1: "business days follow the seller's
country holiday calendar"): Monday to Friday, minus the country's public holidays (`holidays`)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

from rating.errors import InvalidCountry


@lru_cache(maxsize=256)
def _holidays(country: str | None, year: int) -> frozenset[date]:
    if country is None:
        return frozenset()
    return frozenset(holidays.country_holidays(country, years=year).keys())


def check_country(country: str | None) -> str | None:
    """A country `holidays` knows (ISO 3166 alpha-2), or None for weekends only."""
    if country is None:
        return None
    if country not in holidays.list_supported_countries():
        raise InvalidCountry(f"no holiday calendar for country {country!r}", field="country")
    return country


class BusinessCalendar:
    def __init__(self, country: str | None = None) -> None:
        self.country = country
        self._window_starts: dict[tuple[date, int], date | None] = {}

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in _holidays(self.country, day.year)

    def add_business_days(self, day: date, n: int) -> date:
        """The n-th business day after `day` (n = 0: `day` itself)."""
        current = day
        while n > 0:
            current += timedelta(days=1)
            if self.is_business_day(current):
                n -= 1
        return current

    def first_business_day_after(self, day: date) -> date:
        return self.add_business_days(day, 1)

    def last_business_days_start(self, last_day: date, k: int) -> date | None:
        """The first of the last `k` business days up to `last_day` (None when k = 0)."""
        if k <= 0:
            return None
        key = (last_day, k)
        if key not in self._window_starts:  # asked once per order and change of a bill run: the same few months
            current, found = last_day, 0
            while True:
                if self.is_business_day(current):
                    found += 1
                    if found == k:
                        break
                current -= timedelta(days=1)
            self._window_starts[key] = current
        return self._window_starts[key]
