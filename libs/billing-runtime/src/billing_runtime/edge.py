"""What every request is checked for at the edge, before any service code sees it: the body size,
and text and numbers no service can store or compute with.

- text: a NUL character (PostgreSQL cannot store one in `text`) or a lone UTF-16 surrogate (it
  cannot be encoded as UTF-8), in the path, the query string, or any JSON string or object key;
- numbers: `NaN` / `Infinity` (not JSON, but Python's parser accepts them), and numbers beyond the
  platform's precision: more than `JSON_MAX_INTEGER_DIGITS` digits before the point (10^15 is more
  than any amount or quantity we bill; `1e400` is a float infinity), more than
  `JSON_MAX_SIGNIFICANT_DIGITS` significant digits, or nearer to zero than that precision reaches.

- dates: any value written as a date, month, quarter or timestamp (`2026-11`, `2026-11-30`,
  `2026-Q4`, `2026-11-30T10:00:00Z`) whose year is outside `MIN_YEAR`..`MAX_YEAR` (1900-2200):
  `date_out_of_range` (year 9999 with a negative offset overflows `datetime`; year 0 is no date);
- currencies: a `currency` (or `*_currency`) field of the JSON body or the query string that is not
  an active ISO 4217 code with a minor unit (`billing_events.money.MINOR_UNITS`): `unknown_currency`.

Each refusal is a 422 problem+json with a stable `code` and the `field` it was found in
(`path`, `query.<name>`, or the JSON path as validation errors write it: `records.0.name`).
Per-field rules (signs, formats) stay with the services' schemas.

A JSON body is scanned cheaply first (substring searches over the bytes); only a body that
could hold one of these is parsed here, so an ordinary batch is parsed once, by the endpoint.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from prometheus_client import Counter

from billing_events.money import MINOR_UNITS
from billing_runtime.errors import BillingError

INPUT_REJECTED = Counter("billing_http_input_rejected_total", "Requests refused at the edge for their input", ["service", "code"])
BODY_TOO_LARGE = Counter("billing_http_body_too_large_total", "Requests refused with 413", ["service"])

_SURROGATE = re.compile("[\ud800-\udfff]")
# Anything in a JSON body that could decode to a NUL or a surrogate, or be a number we refuse.
# What in a JSON body could decode to a NUL or a surrogate...
_TEXT_LITERALS = (b"\x00", b"\\u0000", b"NaN", b"Infinity")
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
# ...or be a number we refuse. Searched in a copy with every digit written as 0 (and E as e), so
# each test is a substring search: a number has more than 15 integer digits only with a run of 16
# digits, more than 28 significant digits only with such a run or a fraction of 13 digits or more
# (15 + 12 < 28), and an exponent only as `e`, digits and the end of the number (a hex id like
# "4e5f" inside a string does not match).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789E", b"000000000e")
_NUMBER_LITERALS = (b"0" * 16, b"." + b"0" * 13)
_EXPONENT = re.compile(rb"e[+-]?0+[\s,\]}]")


MIN_YEAR, MAX_YEAR = 1900, 2200
# A whole value written as a date, month, quarter or timestamp; its year is checked.
_DATE_LIKE = re.compile(r"(\d{4})-(?:Q\d|\d{2}(?:-\d{2}(?:[Tt ].*)?)?)", re.DOTALL)
# In the raw body: a string that starts with a year outside 1900-2200 and a dash (0000-1899,
# 2201-9999), so only such a body is parsed here.
_YEAR_OUT_OF_RANGE = re.compile(rb'"(?:0\d{3}|1[0-8]\d\d|220[1-9]|22[1-9]\d|2[3-9]\d\d|[3-9]\d{3})-')
_CURRENCY_VALUE = re.compile(rb'currency"\s*:\s*"([A-Z]{3})"')
_CURRENCY_CODE = re.compile("[A-Z]{3}")
_KNOWN_CURRENCIES = frozenset(code.encode() for code in MINOR_UNITS)


def _suspect(body: bytes) -> bool:
    if any(literal in body for literal in _TEXT_LITERALS):
        return True
    if _YEAR_OUT_OF_RANGE.search(body):
        return True
    if b'currency"' in body and any(m.group(1) not in _KNOWN_CURRENCIES for m in _CURRENCY_VALUE.finditer(body)):
        return True
    # One pattern each: a pattern that starts with a literal is searched for that literal first.
    if _ESCAPED_SURROGATE.search(body) or _ENCODED_SURROGATE.search(body):
        return True
    digits = body.translate(_DIGITS_AS_ZERO)
    return any(literal in digits for literal in _NUMBER_LITERALS) or _EXPONENT.search(digits) is not None


class InvalidInput(BillingError):
    status_code = 422
    code = "invalid_input"


class BodyTooLarge(BillingError):
    status_code = 413
    code = "body_too_large"


def check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"`{field}` contains a NUL character", code="nul_character", field=field)
    if _SURROGATE.search(value):
        raise InvalidInput(f"`{field}` contains a lone UTF-16 surrogate, which is not Unicode text", code="invalid_unicode", field=field)


def check_date(value: str, field: str) -> None:
    """A value written as a date (see the module's docstring) must have a year in 1900-2200."""
    if len(value) >= 7 and value[4:5] == "-" and (match := _DATE_LIKE.fullmatch(value)) is not None:
        year = int(match.group(1))
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise InvalidInput(
                f"`{field}` is dated in the year {year}; dates must be within {MIN_YEAR}-{MAX_YEAR}",
                code="date_out_of_range",
                field=field,
                min_year=MIN_YEAR,
                max_year=MAX_YEAR,
            )


def _is_currency_field(name: str) -> bool:
    return name == "currency" or name.endswith("_currency")


def check_currency(value: Any, field: str) -> None:
    # Only a code written as ISO 4217 writes it (three capitals): other spellings are the
    # services' to refuse, or their providers' to send (Stripe's webhooks write `eur`).
    if isinstance(value, str) and _CURRENCY_CODE.fullmatch(value) and value not in MINOR_UNITS:
        raise InvalidInput(f"`{field}` is {value!r}, not an active ISO 4217 currency code", code="unknown_currency", field=field)


def check_path(path: str, raw_path: bytes | None) -> None:
    check_text(path, "path")
    for segment in path.split("/"):
        check_date(segment, "path")
    if raw_path is not None:
        try:
            unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the path is not UTF-8 once percent-decoded", code="invalid_unicode", field="path") from None


def check_query(query_string: bytes) -> None:
    if not query_string:
        return
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput("the query string is not UTF-8 once percent-decoded", code="invalid_unicode", field="query") from None
    for name, value in pairs:
        check_text(name, "query")
        check_text(value, f"query.{name}")
        check_date(value, f"query.{name}")
        if _is_currency_field(name):
            check_currency(value, f"query.{name}")


class _Number(str):
    """A JSON number as written, kept as text until it is checked."""


class _Constant(str):
    """`NaN`, `Infinity` or `-Infinity`."""


def _check_number(literal: str, field: str, max_integer_digits: int, max_significant_digits: int) -> None:
    try:
        number = Decimal(literal)
    except InvalidOperation:  # not reachable for what the JSON parser hands over; refuse anyway
        raise InvalidInput(f"`{field}` is not a number", code="number_invalid", field=field) from None
    if number.is_zero():
        return
    if number.adjusted() + 1 > max_integer_digits:
        raise InvalidInput(
            f"`{field}` has more than {max_integer_digits} digits before the decimal point", code="number_out_of_range", field=field, limit=max_integer_digits
        )
    digits = number.as_tuple().digits
    if len(digits) > max_significant_digits or number.adjusted() < -max_significant_digits:
        raise InvalidInput(
            f"`{field}` is more precise than {max_significant_digits} significant digits", code="number_too_precise", field=field, limit=max_significant_digits
        )


def check_json(body: bytes, *, max_integer_digits: int, max_significant_digits: int) -> None:
    """Refuse a JSON body holding what no service can take (see the module's docstring). A body
    that is not JSON at all is left to the endpoint, which answers it with its own 422."""
    if not _suspect(body):
        return
    try:
        tree = json.loads(body, parse_float=_Number, parse_int=_Number, parse_constant=_Constant)
    except (ValueError, RecursionError):
        return
    _walk(tree, [], max_integer_digits, max_significant_digits)


def _walk(node: Any, path: list[str], max_integer_digits: int, max_significant_digits: int) -> None:
    # Iterative, so a deeply nested body cannot exhaust the stack.
    stack: list[tuple[Any, list[str]]] = [(node, path)]
    while stack:
        value, at = stack.pop()
        field = ".".join(at) or "body"
        if isinstance(value, _Constant):
            raise InvalidInput(f"`{field}` is {value}, which is not a number JSON allows", code="number_not_finite", field=field)
        if isinstance(value, _Number):
            _check_number(value, field, max_integer_digits, max_significant_digits)
        elif isinstance(value, str):
            check_text(value, field)
            check_date(value, field)
        elif isinstance(value, dict):
            for name, item in value.items():
                check_text(name, ".".join([*at, "<key>"]) if at else "<key>")
                if _is_currency_field(name):
                    check_currency(item, ".".join([*at, name]))
                stack.append((item, [*at, name]))
        elif isinstance(value, list):
            stack.extend((item, [*at, str(i)]) for i, item in enumerate(value))


def body_limit(path: str, default: int, per_prefix: dict[str, int]) -> int:
    """The body limit of a path: the longest matching prefix in `per_prefix`, else `default`."""
    best = ""
    for prefix in per_prefix:
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return per_prefix[best] if best else default
