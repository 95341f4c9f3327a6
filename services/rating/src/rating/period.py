"""The billing calendar: a period is a calendar month, named `YYYY-MM`, in the seller's time zone
(BILLING-RULES §1, seed 000 "calendar month billing"). A seller without a zone is on UTC.

An instant belongs to the period whose local dates contain it: 00:00:00 local on the 1st is the
first instant of the month, whatever the zone's offset (Pacific/Apia +13/+14, Lord Howe's
half-hour daylight saving).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating.errors import InvalidPeriod, InvalidTimeZone

_LABEL = re.compile(r"^(\d{4})-(\d{2})$")


def zone(name: str | None) -> tzinfo:
    """The IANA zone called `name` (UTC when none); an unknown name is an `invalid_time_zone`."""
    if name is None or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimeZone(f"unknown time zone {name!r}", field="time_zone") from exc


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # inclusive: the last day of the month
    tz: tzinfo = field(default=UTC, compare=False, repr=False)

    @classmethod
    def parse(cls, label: str, tz: tzinfo = UTC) -> Period:
        """`2026-10` → 1 to 31 October 2026; anything else is an `invalid_period`."""
        match = _LABEL.fullmatch(label.strip()) if isinstance(label, str) else None
        if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
            raise InvalidPeriod(f"period must be a month as YYYY-MM, got {label!r}")
        return cls.of_month(int(match.group(1)), int(match.group(2)), tz)

    @classmethod
    def of_month(cls, year: int, month: int, tz: tzinfo = UTC) -> Period:
        return _month(year, month, tz)

    @classmethod
    def containing(cls, day: date, tz: tzinfo = UTC) -> Period:
        return cls.of_month(day.year, day.month, tz)

    @classmethod
    def of_instant(cls, instant: datetime, tz: tzinfo = UTC) -> Period:
        return cls.containing(instant.astimezone(tz).date(), tz)

    @property
    def label(self) -> str:
        return f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def starts_at(self) -> datetime:
        """The first instant of the period, local midnight of the 1st."""
        return local_midnight(self.start, self.tz)

    @property
    def ends_before(self) -> datetime:
        """The first instant after the period: instants in the period are < this."""
        return local_midnight(self.end + timedelta(days=1), self.tz)

    def next(self) -> Period:
        return Period.containing(self.end + timedelta(days=1), self.tz)

    def previous(self) -> Period:
        return Period.containing(self.start - timedelta(days=1), self.tz)

    def shift(self, months: int) -> Period:
        index = self.start.year * 12 + self.start.month - 1 + months
        return Period.of_month(index // 12, index % 12 + 1, self.tz)

    def months_since(self, other: Period) -> int:
        """How many months `other` lies before this period (negative when after)."""
        return (self.start.year - other.start.year) * 12 + self.start.month - other.start.month

    def contains(self, instant: datetime) -> bool:
        return self.starts_at <= instant < self.ends_before

    def has_ended(self, today: date) -> bool:
        return self.end < today


@lru_cache(maxsize=4096)
def _month(year: int, month: int, tz: tzinfo) -> Period:
    """Periods are immutable values: a bill run asks for the same few months hundreds of
    thousands of times, so each is built once."""
    start = date(year, month, 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return Period(start, following - timedelta(days=1), tz)


@lru_cache(maxsize=16384)
def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first instant of `day` in `tz`, as an aware UTC instant.

    A zone can skip midnight (a daylight-saving jump at 00:00): the day then starts at the first
    existing instant, which `fold`-less construction plus a round trip through UTC gives."""
    naive = datetime.combine(day, time.min, tzinfo=tz)
    instant = naive.astimezone(UTC)
    if instant.astimezone(tz).date() < day:  # a skipped midnight normalised back into the day before
        instant += timedelta(hours=1)
    return instant


def local_day(instant: datetime, tz: tzinfo) -> date:
    return instant.astimezone(tz).date()
