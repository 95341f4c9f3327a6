"""notify's consumers, wired by one `runtime.consume`: every event a partner may subscribe to has a
handler (that fans it out), and each emailed event its email handler; no type is handled twice
(`consume` refuses that at build time)."""

from __future__ import annotations

from billing_events import (
    AccountReinstated,
    AccountSuspended,
    ComparisonReportReady,
    CustomerUpserted,
    DunningStepReached,
    InvoiceIssued,
    PaymentFailed,
    PaymentSucceeded,
    PortalSignInLinkIssued,
    ProjectWorkStatementIssued,
    SellerPaymentAccountChanged,
)
from billing_runtime.service import ServiceRuntime
from notify.config import Settings
from notify.main import build
from notify.webhook.service import WEBHOOK_EVENT_TYPES

EMAILED = (
    InvoiceIssued,
    PaymentSucceeded,
    PaymentFailed,
    DunningStepReached,
    AccountSuspended,
    AccountReinstated,
    ComparisonReportReady,
    ProjectWorkStatementIssued,
    PortalSignInLinkIssued,
)


async def test_every_webhook_type_and_every_emailed_type_has_its_handler(settings: Settings) -> None:
    runtime: ServiceRuntime = build(settings).state.runtime
    try:
        routed = set(runtime.routes)
        projections = {SellerPaymentAccountChanged.event_type}  # the bank account the emails' how-to-pay shows
        assert routed == set(WEBHOOK_EVENT_TYPES) | {model.event_type for model in EMAILED} | projections
        assert runtime.routes[InvoiceIssued.event_type].batch_handler is not None  # a month close's invoices, a batch at a time
        assert runtime.routes[CustomerUpserted.event_type].handler is not None  # the contact projection, then its webhooks
    finally:
        await runtime.engine.dispose()
