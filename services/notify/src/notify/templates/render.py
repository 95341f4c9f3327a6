"""Rendering: every mail is a subject, a plain-text body and an HTML body from the same context.

HTML is autoescaped (a customer called `<script>` stays text) and a missing variable raises
instead of rendering as an empty string: a mail with a hole in it is a bug, not a mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from billing_events import Money
from notify.delivery.instructions import document_label, tax_words


def money(value: Money | Decimal, currency: str | None = None) -> str:
    """`1516.25 USD`: the exact decimal string and its currency, as the event carries it."""
    if isinstance(value, Money):
        return f"{format(value.amount, 'f')} {value.currency}"
    if currency is None:
        raise ValueError("an amount without a currency cannot be shown")
    return f"{format(value, 'f')} {currency}"


def decimal(value: Decimal) -> str:
    return format(value, "f")


def day(value: date | str) -> str:
    """A date as a reader says it, `5 December 2026`, not `2026-12-05`."""
    d = date.fromisoformat(value) if isinstance(value, str) else value
    return f"{d.day} {d:%B %Y}"


def period(start: date | str, end: date | str) -> str:
    """A period in words: a whole calendar month is `October 2026`; else `1 to 15 October 2026`
    or `17 October 2026 to 16 November 2026`."""
    first = date.fromisoformat(start) if isinstance(start, str) else start
    last = date.fromisoformat(end) if isinstance(end, str) else end
    if first.day == 1 and last == (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1):
        return f"{first:%B %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day} to {day(last)}"
    return f"{day(first)} to {day(last)}"


def public_links(documents: list[Any], shown: str | None = None) -> list[tuple[str, str]]:
    """(kind, URL) of the documents a recipient can open: those whose shared link is absolute.
    A link relative to invoicing's API means nothing in someone's mailbox. `shown`: a link the
    mail gives already (How to pay's "Open the invoice"), left out rather than given twice."""
    absolute = [(d.kind, d.shared_url) for d in documents if d.shared_url and d.shared_url.startswith(("https://", "http://"))]
    return [(kind, url) for kind, url in absolute if url != shown]


def make_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("notify", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    env.filters["decimal"] = decimal
    env.filters["public_links"] = public_links
    env.filters["day"] = day
    env.filters["period"] = period
    env.filters["document_label"] = document_label
    env.filters["tax_words"] = tax_words
    return env


ENVIRONMENT = make_environment()


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render(template: str, context: Mapping[str, Any], env: Environment = ENVIRONMENT) -> RenderedEmail:
    """Render `<template>.subject.txt`, `.txt` and `.html` with `context`."""
    subject = env.get_template(f"{template}.subject.txt").render(context)
    # A header is one line whatever the template or the data put into it.
    subject = " ".join(subject.split())
    full = {**context, "subject": subject}
    text = env.get_template(f"{template}.txt").render(full)
    html = env.get_template(f"{template}.html").render(full)
    return RenderedEmail(subject=subject, text=text.strip() + "\n", html=html)
