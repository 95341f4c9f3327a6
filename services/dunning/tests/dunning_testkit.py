"""Building, publishing and waiting for events in the dunning tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx

from billing_events import (
    CloudEvent,
    CreditNoteIssued,
    EventData,
    InvoiceSettled,
    Money,
    PaymentFailed,
    PaymentSucceeded,
    account_id,
    new_event,
)
from billing_events.testing import example_invoice_issued, make_customer
from billing_runtime.testing import eventually, tenant_headers

DUE = date(2026, 12, 5)


def event(data: EventData, tenant: str) -> CloudEvent[Any]:
    return new_event(data, source="test", tenant=tenant, event_id=str(uuid.uuid4()))


def invoice_issued(tenant: str, invoice_id: str, *, customer: str = "c-1", total: str = "1516.25", due_on: date = DUE) -> CloudEvent[Any]:
    """A complete InvoiceIssued as invoicing would emit it (worked example A: one line, no tax)."""
    return event(example_invoice_issued(tenant, invoice_id, number=f"NW-{invoice_id[:8]}", customer=customer, total=total, due_on=due_on), tenant)


def payment_succeeded(tenant: str, invoice_id: str, payment_id: str, amount: str, customer: str = "c-1", paid_on: date = date(2026, 12, 10)) -> CloudEvent[Any]:
    data = PaymentSucceeded(
        payment_id=payment_id,
        invoice_id=invoice_id,
        seller_id=tenant,
        account_id=account_id(tenant, customer),
        amount=Money.of(amount, "USD"),
        method="bank_transfer",
        provider="bank_transfer",
        paid_on=paid_on,
    )
    return event(data, tenant)


def invoice_settled(tenant: str, invoice_id: str, customer: str = "c-1") -> CloudEvent[Any]:
    data = InvoiceSettled(
        invoice_id=invoice_id,
        number=f"NW-{invoice_id[:8]}",
        seller_id=account_id("distributor", tenant),
        buyer_account_id=account_id(tenant, customer),
        settled_on=date(2026, 12, 12),
        amount_paid=Money.of("1516.25", "USD"),
    )
    return event(data, tenant)


async def case_when(client: httpx.AsyncClient, tenant: str, invoice_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the case list until the invoice's case satisfies `ready`; return it."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        items = (await client.get("/v1/cases", headers=tenant_headers(tenant), params={"limit": 500})).json()["items"]
        for item in items:
            if item["invoice_id"] == invoice_id and ready(item):
                found.update(item)
                return True
        return False

    await eventually(check)
    return found


def case_events(seen: list[CloudEvent[Any]], kind: type[EventData], invoice_id: str) -> list[CloudEvent[Any]]:
    return [e for e in seen if isinstance(e.data, kind) and getattr(e.data, "invoice_id", None) == invoice_id]


def payment_failed(tenant: str, invoice_id: str, payment_id: str, amount: str, failed_on: date, customer: str = "c-1") -> CloudEvent[Any]:
    data = PaymentFailed(
        payment_id=payment_id,
        invoice_id=invoice_id,
        seller_id=tenant,
        account_id=account_id(tenant, customer),
        amount=Money.of(amount, "USD"),
        method="direct_debit",
        provider="gocardless",
        failed_on=failed_on,
        reason_code="insufficient_funds",
        reason="The customer's account had insufficient funds",
    )
    return event(data, tenant)


def credit_note(tenant: str, invoice_id: str, total: str, issued_on: date, customer: str = "c-1") -> CloudEvent[Any]:
    amount = Money.of(total, "USD")
    data = CreditNoteIssued(
        credit_note_id=str(uuid.uuid4()),
        number=f"CN-{invoice_id[:8]}",
        invoice_id=invoice_id,
        invoice_number=f"NW-{invoice_id[:8]}",
        seller_id=account_id("distributor", tenant),
        buyer_account_id=account_id(tenant, customer),
        issued_on=issued_on,
        currency="USD",
        net_total=amount,
        tax_total=Money.of("0.00", "USD"),
        total=amount,
        reason="service credit",
    )
    return event(data, tenant)


def customer_upserted(partner: str, external_id: str) -> CloudEvent[Any]:
    return event(make_customer(partner, external_id, billing_email=f"{external_id}@example.com", country="US", currency="USD"), partner)


async def standing_when(client: httpx.AsyncClient, tenant: str, account: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def check() -> bool:
        body = (await client.get(f"/v1/accounts/{account}/standing", headers=tenant_headers(tenant))).json()
        if ready(body):
            found.update(body)
            return True
        return False

    await eventually(check)
    return found
