"""Events in: customers announced by usage-ingest; their direct-debit mandates and the method their
invoices are collected from, from payments."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CollectingMethodChanged, CustomerUpserted, MandateChanged
from billing_runtime.service import Handlers, ServiceRuntime
from invoicing.buyer import repository, service
from invoicing.config import Settings

COLLECTING_APPLIED = Counter(
    "billing_buyer_collecting_methods_applied_total",
    "CollectingMethodChanged applied (stored) or ignored (an older announcement than the one kept), by method",
    ["method", "outcome"],
)


async def on_customer_upserted(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[CustomerUpserted]) -> None:
    await service.record_customer(runtime, session, event.data)


async def on_mandate_changed(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[MandateChanged]) -> None:
    data = event.data
    row = {"account_id": data.account_id, "seller_id": data.seller_id, "mandate_id": data.mandate_id, "provider": data.provider, "status": data.status}
    await repository.put_mandate(session, row)


async def on_collecting_method_changed(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[CollectingMethodChanged]) -> None:
    data = event.data
    row = {
        "account_id": data.account_id,
        "seller_id": data.seller_id,
        "method_id": data.method_id,
        "method": data.method,
        "provider": data.provider,
        "card_brand": data.card_brand,
        "card_last4": data.card_last4,
        "mandate_id": data.mandate_id,
        "changed_at": data.changed_at,
    }
    stored = await repository.put_collecting_method(session, row)
    COLLECTING_APPLIED.labels(data.method or "none", "stored" if stored else "older").inc()


HANDLERS: Handlers = {
    CustomerUpserted: on_customer_upserted,
    MandateChanged: on_mandate_changed,
    CollectingMethodChanged: on_collecting_method_changed,
}
