"""Event factories for tests: a valid CloudEvent of any type in the contract, in one call.

Each factory starts from the type's golden example (`examples/<type>.json`, which the contract
tests keep valid against the committed schema) and replaces what the test names: the envelope's
`tenant`, `subject`, `id`, `time`, `source`, and any field of `data`. The result is validated by
the model, so a test cannot build an event no producer could send. A fresh `id` every call (unless
given), so two events built alike are two events to the inbox.

    from billing_events.testing import make_event
    event = make_event(PaymentSucceeded, tenant="seller-1", account_id=account, amount=Money(...))

Pure: no broker, no database (the in-process `deliver` is `billing_runtime.testing.deliver`).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from billing_events.envelope import CloudEvent, EventData
from billing_events.events.ingest import CustomerUpserted
from billing_events.events.invoicing import InvoiceIssued, InvoiceLine, Party, TaxBreakdown
from billing_events.ids import account_id
from billing_events.money import Money
from billing_events.registry import REGISTRY

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

D = TypeVar("D", bound=EventData)


@cache
def _example(event_type: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text(encoding="utf-8"))
    return document


def example_data(model: type[EventData] | str) -> dict[str, Any]:
    """The `data` of the golden example of `model` (a model class or its type string), as JSON
    values (a copy: change it freely)."""
    event_type = model if isinstance(model, str) else model.event_type
    if event_type not in REGISTRY:
        raise KeyError(f"no event type {event_type!r} in the contract")
    data: dict[str, Any] = json.loads(json.dumps(_example(event_type)["data"]))
    return data


def make_data(model: type[D], **fields: Any) -> D:
    """An instance of `model`: its golden example's data with `fields` replaced, validated."""
    data = example_data(model)
    unknown = set(fields) - set(model.model_fields)
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    data.update({name: _jsonable(value) for name, value in fields.items()})
    return model.model_validate(data)


def make_event(
    model: type[D],
    *,
    tenant: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    source: str | None = None,
    traceparent: str | None = None,
    **fields: Any,
) -> CloudEvent[D]:
    """A valid `CloudEvent[model]`: the golden example's envelope and data, with the named
    envelope attributes and data `fields` replaced. `id` is new unless `event_id` is given;
    `subject` is kept from the example unless given (pass `subject=""` for none)."""
    example = _example(model.event_type)
    return CloudEvent[model](  # type: ignore[valid-type]
        id=event_id or str(uuid.uuid4()),
        source=source or example["source"],
        type=model.event_type,
        subject=(subject or None) if subject is not None else example.get("subject"),
        time=time or datetime.fromisoformat(example["time"]),
        tenant=tenant or example["tenant"],
        traceparent=traceparent,
        data=make_data(model, **fields),
    )


def every_event_type() -> list[type[EventData]]:
    """Every model of the contract, in type order: for tests that go through all of them."""
    return [REGISTRY[t] for t in sorted(REGISTRY)]


def _jsonable(value: Any) -> Any:
    """A replaced field as the model reads it: a nested model (a `Money`, a line) given as itself
    is dumped to JSON values, so the whole data validates in one pass."""
    if isinstance(value, EventData | CloudEvent) or hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def make_customer(
    tenant: str,
    external_id: str = "c1",
    *,
    name: str | None = None,
    billing_email: str | None = None,
    country: str = "IE",
    currency: str = "EUR",
    revision: int = 1,
    **fields: Any,
) -> CustomerUpserted:
    """Customer `external_id` of partner `tenant` as usage-ingest announces it: a minimal billing
    profile (no VAT id, address or contact unless `fields` name them), named `Customer <id>` and
    billed at `ap@<id>.example` unless given. Not the golden example (that one has a German VAT id
    and address, which change tax and documents); the caller puts it in an event of its own source."""
    unknown = set(fields) - set(CustomerUpserted.model_fields)
    if unknown:  # the model ignores unknown fields: a misspelt one would be lost without a word
        raise TypeError(f"CustomerUpserted has no field {', '.join(sorted(unknown))}")
    return CustomerUpserted(
        **{
            "account_id": account_id(tenant, external_id),
            "partner_id": tenant,
            "external_id": external_id,
            "name": name or f"Customer {external_id}",
            "billing_email": billing_email or f"ap@{external_id}.example",
            "country": country,
            "currency": currency,
            "revision": revision,
            **fields,
        }
    )


def example_invoice_issued(
    tenant: str,
    invoice_id: str,
    *,
    number: str,
    customer: str = "c-1",
    total: str = "1516.25",
    currency: str = "USD",
    due_on: date = date(2026, 12, 5),
) -> InvoiceIssued:
    """A complete InvoiceIssued as invoicing would emit it (worked example A: one line of `total`,
    no tax), from the tenant's distributor to its customer `customer`; the caller puts it in an
    event of its own source."""
    amount = Money.of(total, currency)
    zero = Money.of("0.00", currency)
    return InvoiceIssued(
        invoice_id=invoice_id,
        number=number,
        seller=Party(account_id=account_id("distributor", tenant), name="Northwind IT", country="US"),
        buyer=Party(account_id=account_id(tenant, customer), name="Contoso Dental", country="US", email="ap@contoso.example"),
        issued_on=date(2026, 11, 2),
        due_on=due_on,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        currency=currency,
        lines=[
            InvoiceLine(
                line_id=f"{invoice_id}-1",
                product_code="USR-SUP",
                description="User support, October 2026",
                service_period_start=date(2026, 10, 1),
                service_period_end=date(2026, 10, 31),
                quantity=Decimal(1),
                unit_price=amount,
                net=amount,
                tax_rate=Decimal(0),
                tax_category="O",
            )
        ],
        tax_breakdown=[TaxBreakdown(tax_category="O", rate=Decimal(0), taxable=amount, tax=zero)],
        net_total=amount,
        tax_total=zero,
        total=amount,
    )
