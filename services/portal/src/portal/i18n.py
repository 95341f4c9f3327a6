"""Amounts and dates for the viewer's locale (babel), and the strings' one gettext hook.

Amounts arrive as the services' exact decimal strings; `billing_events.money.quantize` checks each
against its currency's minor unit (a finer amount is a bug upstream, not something to round here)
before babel writes it with the locale's symbols and separators. Charges still being rated are
unrounded: `round_half_up` rounds them once, as invoicing will. Every visible string in the
templates goes through `_` (and, in Python, is marked with `N_`) so a catalogue can translate it:
English is the source; `make messages` extracts `locale/messages.pot` with babel and updates the
catalogues beside it (`locale/<lang>/LC_MESSAGES/messages.po`, read as they are, compiled in memory).

The locale is the user's own (`portal_user.locale`, set on invitation), else the first of the
browser's Accept-Language that babel knows, else `PORTAL_LOCALE`. Amounts and dates follow that
locale; the words follow its language when there is a catalogue for it (German: the navigation and
headings), else stay English."""

from __future__ import annotations

import functools
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, format_percent
from babel.support import NullTranslations, Translations

from billing_events.money import quantize, round_half_up

SUPPORTED = ("en", "en_GB", "en_IE", "de", "fr", "nl", "es", "it")
LOCALE_DIR = Path(__file__).parent / "locale"


def N_(message: str) -> str:
    """Marks a string for extraction where it is defined (a page title); `_` translates it where shown."""
    return message


@functools.cache
def translations(language: str) -> NullTranslations:
    """The catalogue of `language` (`de`), compiled in memory from its .po file; none: English."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not po.is_file():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def formatter_for(user_locale: str | None, accept_language: str | None, default: str) -> Formatter:
    locale = user_locale or negotiate(accept_language, default)
    return Formatter(locale, translations(locale.split("_")[0]))


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

    def datetime(self, value: str | datetime | None) -> str:
        """A moment (as the services write it, ISO 8601, or a datetime), to the second."""
        if value is None or value == "":
            return "—"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return format_datetime(moment, format="medium", locale=self.locale)
