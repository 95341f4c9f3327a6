"""The portal's strings are ready for translation: the committed template is what `make messages`
extracts today, every catalogue is read, and the locale follows the user, then the browser."""

from __future__ import annotations

from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from portal.i18n import LOCALE_DIR, formatter_for, negotiate, translations

PORTAL = Path(__file__).parents[1]


def msgids(path: Path) -> set[str]:
    with path.open("rb") as f:
        return {str(m.id) for m in read_po(f) if m.id}


def test_the_committed_template_is_what_make_messages_extracts(tmp_path: Path) -> None:
    fresh = tmp_path / "messages.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(PORTAL / "babel.cfg"), "-k", "N_", "--no-location", "--omit-header", "-o", str(fresh), str(PORTAL)]
    )
    committed = msgids(LOCALE_DIR / "messages.pot")
    assert msgids(fresh) == committed, f"run `make messages`: new {sorted(msgids(fresh) - committed)}, gone {sorted(committed - msgids(fresh))}"
    # The strings the partner pages and the error pages mark in Python are in it, not only the templates'.
    assert {"Margins", "Portal sign-in", "Payment retry", "Not for you", "Partner finance"} <= committed


def test_the_german_catalogue_covers_the_navigation_and_headings() -> None:
    german = msgids(LOCALE_DIR / "de" / "LC_MESSAGES" / "messages.po")
    assert german == msgids(LOCALE_DIR / "messages.pot"), "the German catalogue is behind the template: run `make messages`"
    de = translations("de")
    for english, expected in (("Account statement", "Kontoauszug"), ("Margins", "Margen"), ("Delivery log", "Versandprotokoll"), ("Sign out", "Abmelden")):
        assert de.gettext(english) == expected
    assert de.gettext("No email sent yet.") == "No email sent yet."  # untranslated: English stays


def test_the_locale_is_the_users_then_the_browsers_then_the_default() -> None:
    assert formatter_for("de", "en-GB,en;q=0.8", "en").locale == "de"
    assert formatter_for(None, "fr-FR,fr;q=0.9,de;q=0.5", "en").locale == "fr_FR"
    assert formatter_for(None, None, "en_IE").locale == "en_IE"
    assert negotiate("xx-YY, *;q=0.1", "en") == "en"
    german = formatter_for(None, "de-DE", "en")
    assert (german.gettext("Margins"), german.money("1234.50", "EUR"), german.money("8.805", "EUR", exact=False)) == ("Margen", "1.234,50\xa0€", "8,81\xa0€")
    french = formatter_for(None, "fr-FR", "en")  # no French catalogue: English words, French numbers
    assert french.gettext("Margins") == "Margins" and french.money("1234.50", "EUR") == "1\u202f234,50\xa0€"
    assert formatter_for(None, "en-GB", "en").datetime("2026-12-01T15:58:15+00:00") == "1 Dec 2026, 15:58:15"
