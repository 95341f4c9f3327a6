"""The billing calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from rating.errors import InvalidPeriod
from rating.period import Period


@pytest.mark.parametrize(
    ("label", "start", "end"),
    [
        ("2026-10", date(2026, 10, 1), date(2026, 10, 31)),
        ("2028-02", date(2028, 2, 1), date(2028, 2, 29)),
        ("2026-12", date(2026, 12, 1), date(2026, 12, 31)),
        ("2026-11", date(2026, 11, 1), date(2026, 11, 30)),
    ],
)
def test_a_period_is_a_calendar_month(label: str, start: date, end: date) -> None:
    period = Period.parse(label)
    assert (period.start, period.end, period.label) == (start, end, label)


@pytest.mark.parametrize("label", ["2026-13", "2026-00", "2026-1", "26-10", "2026/10", "october", "", "2026-10-01", "0000-01"])
def test_malformed_periods_are_refused(label: str) -> None:
    with pytest.raises(InvalidPeriod):
        Period.parse(label)


def test_instants_belong_to_the_period_by_utc_day() -> None:
    october = Period.parse("2026-10")
    assert october.contains(datetime(2026, 10, 1, tzinfo=UTC))
    assert october.contains(datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert not october.contains(datetime(2026, 11, 1, tzinfo=UTC))
    assert not october.contains(datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC))
    # Until sellers have time zones, 1 November 00:30 in Berlin is still October (23:30 UTC).
    assert october.contains(datetime(2026, 11, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin")))


def test_a_period_has_ended_only_after_its_last_day() -> None:
    october = Period.parse("2026-10")
    assert not october.has_ended(date(2026, 10, 31))
    assert october.has_ended(date(2026, 11, 1))
    assert Period.containing(date(2026, 11, 21)).label == "2026-11"
