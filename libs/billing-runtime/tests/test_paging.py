"""Keyset paging: a listing fetches one row past its page, `page_of` trims it and names the next
page's cursor, and `decode_keyset` reads that cursor back."""

from __future__ import annotations

from datetime import date

import pytest

from billing_runtime.api import InvalidCursor, decode_keyset, encode_cursor, page_of

ROWS = [(date(2026, 12, day), f"case-{day}") for day in range(1, 6)]


def cursor_of(row: tuple[date, str]) -> str:
    return encode_cursor(row[0].isoformat(), row[1])


def test_a_row_past_the_page_names_the_next_page_by_the_last_row_kept() -> None:
    page, next_cursor = page_of(ROWS[:3], 2, cursor_of)
    assert page == ROWS[:2]
    assert next_cursor is not None and decode_keyset(next_cursor, date.fromisoformat) == ROWS[1]


def test_the_last_page_has_no_cursor() -> None:
    assert page_of(ROWS[:2], 2, cursor_of) == (ROWS[:2], None)
    assert page_of(ROWS[:1], 2, cursor_of) == (ROWS[:1], None)
    assert page_of([], 2, cursor_of) == ([], None)


def test_a_cursor_of_another_shape_is_refused() -> None:
    assert decode_keyset(None, date.fromisoformat) is None
    for foreign in ("not-base64!", encode_cursor("2026-12-01"), encode_cursor("yesterday", "case-1")):
        with pytest.raises(InvalidCursor):
            decode_keyset(foreign, date.fromisoformat)
