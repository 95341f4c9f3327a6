"""The event types a partner may subscribe its webhook endpoints to: one declaration
(`WEBHOOK_EVENTS`), each type once, and exactly the types the README's "Partner webhooks" section
promises, in its order."""

from __future__ import annotations

import re
from pathlib import Path

from billing_events import CollectingMethodChanged, CustomerUpserted
from billing_events.registry import REGISTRY
from notify.webhook.service import WEBHOOK_EVENT_TYPES, WEBHOOK_EVENTS

README = Path(__file__).parents[1] / "README.md"


def promised() -> list[str]:
    """The types listed in the README's first "Partner webhooks" bullet (up to "(others: 422")."""
    section = README.read_text().split("## Partner webhooks", 1)[1]
    endpoints = section.split("(others: 422", 1)[0]
    return re.findall(r"`(billing\.[a-z_.]+\.v\d+)`", endpoints)


def test_each_webhook_type_is_declared_once_and_is_a_public_event() -> None:
    types = [model.event_type for model in WEBHOOK_EVENTS]
    repeated = sorted({t for t in types if types.count(t) > 1})
    assert not repeated, f"declared more than once in WEBHOOK_EVENTS: {repeated}"
    assert set(types) == WEBHOOK_EVENT_TYPES
    assert set(types) <= set(REGISTRY), "a webhook type that billing_events does not register"


def test_the_webhook_types_are_the_ones_the_readme_promises_in_its_order() -> None:
    listed = promised()
    assert len(listed) == len(set(listed)) and len(listed) >= 15
    assert [model.event_type for model in WEBHOOK_EVENTS] == listed
    # A partner's system hears of the customer it bills changing and of the card or mandate it is collected from.
    assert {CustomerUpserted.event_type, CollectingMethodChanged.event_type} <= WEBHOOK_EVENT_TYPES
