import importlib
import inspect
import json
import pkgutil
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import billing_events.events
from billing_events import topics
from billing_events.envelope import (
    CloudEvent,
    EnvelopeError,
    EventData,
    attributes_from_headers,
    event_from_json,
    event_to_json,
    from_kafka,
    new_event,
    to_kafka,
)
from billing_events.events.invoicing import InvoiceSettled
from billing_events.events.payments import PaymentFailed, PaymentSucceeded
from billing_events.money import Money
from billing_events.registry import EVENT_MODELS, REGISTRY, model_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TYPE_PATTERN = re.compile(r"^billing\.[a-z_]+\.[a-z_]+\.v\d+$")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def settled(**changes: Any) -> InvoiceSettled:
    fields: dict[str, Any] = {
        "invoice_id": "inv-318",
        "number": "TSD-2026-000318",
        "seller_id": "seller-tailspin",
        "buyer_account_id": "acct-northwind",
        "settled_on": date(2026, 12, 3),
        "amount_paid": Money.of("1516.25", "USD"),
    }
    return InvoiceSettled(**{**fields, **changes})


def example(event_type: str) -> CloudEvent[Any]:
    text = (EXAMPLES / f"{event_type}.json").read_text(encoding="utf-8")
    return event_from_json(text, REGISTRY[event_type])


def test_to_kafka_puts_attributes_in_ce_headers_and_keys_by_buyer_account() -> None:
    event = new_event(
        settled(),
        source="/services/invoicing",
        tenant="northwind-it",
        subject="inv-318",
        event_id="evt-1",
        time=datetime(2026, 12, 3, 14, 5, 40, tzinfo=timezone(timedelta(hours=-5))),
        traceparent=TRACEPARENT,
    )
    message = to_kafka(event)
    assert message.topic == "billing.invoices"
    assert message.key == b"acct-northwind"
    assert dict(message.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-1",
        "ce_source": b"/services/invoicing",
        "ce_type": b"billing.invoice.settled.v1",
        "ce_time": b"2026-12-03T14:05:40-05:00",
        "ce_tenant": b"northwind-it",
        "ce_subject": b"inv-318",
        "content-type": b"application/json",
        "traceparent": TRACEPARENT.encode(),
    }
    assert json.loads(message.value)["amount_paid"] == {"amount": "1516.25", "currency": "USD"}
    assert from_kafka(message.headers, message.value, InvoiceSettled) == event


def test_optional_attributes_are_left_out_of_the_headers() -> None:
    event = new_event(settled(), source="/services/invoicing", tenant="northwind-it")
    message = to_kafka(event)
    names = [name for name, _ in message.headers]
    assert "ce_subject" not in names and "traceparent" not in names
    decoded = from_kafka(tuple(message.headers), message.value, InvoiceSettled)
    assert decoded.subject is None and decoded.traceparent is None
    assert decoded.time == event.time and decoded.time.tzinfo is not None


def test_attributes_from_headers_ignores_foreign_headers() -> None:
    headers = [("ce_type", b"billing.invoice.settled.v1"), ("x-retry", b"3"), ("content-type", b"application/json")]
    assert attributes_from_headers(headers) == {"type": "billing.invoice.settled.v1", "datacontenttype": "application/json"}


@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_every_golden_example_survives_kafka_and_json(event_type: str) -> None:
    event = example(event_type)
    message = to_kafka(event)
    assert message.topic == REGISTRY[event_type].topic.name
    assert from_kafka(message.headers, message.value, REGISTRY[event_type]) == event
    assert event_from_json(event_to_json(event), REGISTRY[event_type]) == event


@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_partition_key_is_the_buyer_account(event_type: str) -> None:
    event = example(event_type)
    data = event.data.model_dump()
    if event.data.topic is topics.AUTH:  # API key lifecycle: keyed by key id, not by an account
        assert to_kafka(event).key == data["key_id"].encode()
        return
    if event.data.topic is topics.CATALOGUE:  # a seller's products, in order; a product is no account's
        assert to_kafka(event).key == data["seller_id"].encode()
        return
    if event_type == "billing.seller.payment_account_changed.v1":  # a seller's own account, in order; no buyer's
        assert to_kafka(event).key == data["seller_id"].encode()
        return
    if event_type == "billing.portal.sign_in_link_issued.v1":  # a portal user's links, in order; staff have no account
        assert to_kafka(event).key == data["user_id"].encode()
        return
    buyer = data.get("buyer_account_id") or (data.get("buyer") or {}).get("account_id") or data["account_id"]
    assert to_kafka(event).key == buyer.encode()


def _message(**header_changes: bytes | None) -> tuple[list[tuple[str, bytes]], bytes]:
    message = to_kafka(new_event(settled(), source="/services/invoicing", tenant="northwind-it"))
    headers = dict(message.headers)
    for name, value in header_changes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return list(headers.items()), message.value


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"{}",
        b'{"invoice_id": "inv-318"}',
        b"[1, 2]",
        b"\xff\xfe",
    ],
)
def test_unreadable_values_raise_envelope_error(value: bytes) -> None:
    headers, _ = _message()
    with pytest.raises(EnvelopeError, match="invalid billing.invoice.settled.v1 event"):
        from_kafka(headers, value, InvoiceSettled)


def _with_data(**changes: Any) -> bytes:
    _, value = _message()
    data = json.loads(value)
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "value",
    [
        _with_data(amount_paid={"amount": 1516.25, "currency": "USD"}),
        _with_data(amount_paid={"amount": "1516,25", "currency": "USD"}),
        _with_data(amount_paid={"amount": "²", "currency": "USD"}),
        _with_data(amount_paid={"amount": "1516.25", "currency": "usd"}),
        _with_data(settled_on="3 Dec 2026"),
    ],
)
def test_bad_data_raises_envelope_error(value: bytes) -> None:
    headers, _ = _message()
    with pytest.raises(EnvelopeError):
        from_kafka(headers, value, InvoiceSettled)


def test_unknown_data_fields_are_ignored_so_producers_can_add_optional_ones() -> None:
    headers, _ = _message()
    event = from_kafka(headers, _with_data(added_later="field"), InvoiceSettled)
    assert event.data.amount_paid.amount == Decimal("1516.25")
    assert "added_later" not in event.data.model_dump()


def test_missing_or_naive_attributes_raise_envelope_error() -> None:
    headers, value = _message(ce_id=None)
    with pytest.raises(EnvelopeError):
        from_kafka(headers, value, InvoiceSettled)
    headers, value = _message(ce_time=b"2026-12-03T14:05:40")
    with pytest.raises(EnvelopeError):
        from_kafka(headers, value, InvoiceSettled)


def test_a_type_that_does_not_match_the_model_is_refused() -> None:
    headers, value = _message(ce_type=b"billing.invoice.settled.v2")
    with pytest.raises(EnvelopeError, match="is not 'billing.invoice.settled.v1'"):
        from_kafka(headers, value, InvoiceSettled)
    failed = example("billing.payment.failed.v1")
    with pytest.raises(EnvelopeError):
        event_from_json(event_to_json(failed), PaymentSucceeded)
    with pytest.raises(EnvelopeError):
        event_from_json("{not json", PaymentFailed)


def test_registry_maps_every_type_to_its_model() -> None:
    assert len(REGISTRY) == len(EVENT_MODELS), "two models share a type string"
    for event_type, model in REGISTRY.items():
        assert model.event_type == event_type
        assert model_for(event_type) is model
    assert model_for("billing.invoice.issued.v0") is None


def test_type_strings_are_versioned() -> None:
    bad = [model.event_type for model in EVENT_MODELS if not TYPE_PATTERN.match(model.event_type)]
    assert bad == []


def test_registry_covers_every_event_model_defined() -> None:
    defined: set[type[EventData]] = set()
    for info in pkgutil.iter_modules(billing_events.events.__path__):
        module = importlib.import_module(f"billing_events.events.{info.name}")
        defined |= {obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, EventData) and obj is not EventData}
    assert defined - set(EVENT_MODELS) == set()


def test_every_event_goes_to_a_known_topic() -> None:
    for model in EVENT_MODELS:
        assert model.topic in topics.ALL_TOPICS
        assert model.topic is not topics.DEAD_LETTER


def test_new_event_fills_the_envelope() -> None:
    before = datetime.now(UTC)
    event = new_event(settled(), source="/services/invoicing", tenant="northwind-it")
    assert event.type == "billing.invoice.settled.v1"
    assert event.specversion == "1.0" and event.datacontenttype == "application/json"
    assert event.time >= before and event.time.tzinfo is not None
    assert event.id != new_event(settled(), source="/services/invoicing", tenant="northwind-it").id
