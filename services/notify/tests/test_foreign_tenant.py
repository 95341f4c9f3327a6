"""payments' events name their seller (`seller_id`, the tenant they are published under, declared
as their `tenant_field`): notify, which reads all five, refuses one whose seller is another tenant
than its envelope's before any handler sees it (dead-lettered, `foreign_tenant`), so no email or
webhook of one partner's customer is ever made under another partner's name; the same event under
its own tenant is applied."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from billing_events import (
    CollectingMethodChanged,
    EventData,
    MandateChanged,
    Money,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    account_id,
    new_event,
)
from billing_runtime.testing import deliver

pytestmark = pytest.mark.consume(False)


def payments_events(seller: str, buyer: str) -> list[EventData]:
    amount = Money.of("10.00", "EUR")
    common: dict[str, Any] = {"seller_id": seller, "account_id": buyer}
    paid = {"payment_id": f"pay-{seller}", "invoice_id": f"inv-{seller}", "amount": amount, **common}
    return [
        PaymentSucceeded(**paid, method="card", provider="stripe", paid_on=date(2026, 12, 1)),
        PaymentFailed(**paid, method="direct_debit", provider="gocardless", failed_on=date(2026, 12, 1), reason_code="insufficient_funds", reason="No funds"),
        PaymentRefunded(**paid, refund_id=f"rf-{seller}", refunded_on=date(2026, 12, 2)),
        MandateChanged(**common, mandate_id=f"MD-{seller}", provider="gocardless", status="active"),
        CollectingMethodChanged(**common, changed_at=datetime(2026, 12, 1, tzinfo=UTC), method="card", provider="stripe", card_brand="visa", card_last4="4242"),
    ]


async def test_a_payments_event_naming_another_seller_is_refused(client: httpx.AsyncClient, tenant: str) -> None:
    buyer = account_id(tenant, "c-1")
    foreign = [new_event(data, source="/tests", tenant=tenant) for data in payments_events(f"{tenant}-other", buyer)]
    delivery = await deliver(client, *foreign)
    assert [letter.event_id for letter in delivery.dead_lettered] == [e.id for e in foreign] and not delivery.applied
    assert delivery.codes == ["foreign_tenant"] * len(foreign)

    # The same events under their own seller are notify's to handle (its routes, its handlers).
    own = [new_event(data, source="/tests", tenant=tenant) for data in payments_events(tenant, buyer)]
    assert (await deliver(client, *own)).applied == [e.id for e in own]
