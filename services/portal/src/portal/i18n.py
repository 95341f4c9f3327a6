"""Amounts and dates for the viewer's locale (babel), and the strings' one gettext hook.

Amounts arrive as the services' exact decimal strings; `billing_events.money.quantize` checks each
against its currency's minor unit (a finer amount is a bug upstream, not something to round here)
before babel writes it with the locale's symbols and separators. Charges still being rated are
unrounded: `round_half_up` rounds them once, as invoicing will. Every visible string in the
templates goes through `_` so a catalogue can translate it (English is the source)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from babel.support import NullTranslations

from billing_events.money import quantize, round_half_up

SUPPORTED = ("en", "en_GB", "en_IE", "de", "fr", "nl", "es", "it")


def negotiate(accept_language: str | None, default: str) -> str:
    """The first locale of the browser's Accept-Language that babel knows (else `default`)."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().replace("-", "_")
        if not tag or tag == "*":
            continue
        try:
            Locale.parse(tag)
        except (ValueError, UnknownLocaleError):
            continue
        return tag
    return default


class Formatter:
    def __init__(self, locale: str, translations: NullTranslations | None = None) -> None:
        self.locale = locale
        self.translations = translations or NullTranslations()

    def gettext(self, message: str, **values: Any) -> str:
        text = self.translations.gettext(message)
        return text % values if values else text

    def money(self, amount: str | Decimal | None, currency: str | None, *, exact: bool = True) -> str:
        """An amount the services computed (`exact`: already in minor units, checked) or a running
        charge (rounded half up once)."""
        if amount is None or currency is None:
            return "—"
        value = Decimal(amount)
        value = quantize(value, currency) if exact else round_half_up(value, currency)
        return format_currency(value, currency, locale=self.locale)

    def number(self, value: str | Decimal | None) -> str:
        return "—" if value is None else format_decimal(Decimal(value), locale=self.locale)

    def percent(self, rate: str | Decimal | None) -> str:
        """A tax rate as the services write it (`21` or `0.21`? they write percent points: `21.00`)."""
        if rate is None:
            return "—"
        return format_percent(Decimal(rate) / 100, locale=self.locale, decimal_quantization=False)

    def date(self, value: str | date | None) -> str:
        if value is None or value == "":
            return "—"
        return format_date(date.fromisoformat(value) if isinstance(value, str) else value, format="medium", locale=self.locale)

    def datetime(self, value: datetime) -> str:
        return format_datetime(value, format="medium", locale=self.locale)
