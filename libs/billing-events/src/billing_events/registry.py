"""From a CloudEvents `type` string to its data model."""

from __future__ import annotations

from billing_events.envelope import EventData
from billing_events.events import auth, dunning, ingest, invoicing, notify, payments, portal, rating

EVENT_MODELS: tuple[type[EventData], ...] = (
    ingest.CustomerUpserted,
    ingest.SubscriptionOrdered,
    ingest.SubscriptionChanged,
    ingest.SubscriptionCancelled,
    ingest.UsageRecorded,
    ingest.QuantityObserved,
    rating.ProductPublished,
    rating.ChargesRated,
    rating.PeriodClosed,
    invoicing.InvoiceIssued,
    invoicing.CreditNoteIssued,
    invoicing.InvoiceSettled,
    payments.PaymentSucceeded,
    payments.PaymentFailed,
    payments.PaymentRefunded,
    payments.MandateChanged,
    dunning.DunningCaseOpened,
    dunning.DunningStepReached,
    dunning.PaymentRetryRequested,
    dunning.AccountSuspended,
    dunning.AccountReinstated,
    dunning.DunningCaseClosed,
    notify.NotificationDelivered,
    auth.ApiKeyIssued,
    auth.ApiKeyRevoked,
    invoicing.ComparisonReportReady,
    portal.PortalSignInLinkIssued,
    rating.ProjectWorkRecorded,
    invoicing.ProjectWorkStatementIssued,
    payments.CollectingMethodChanged,
    invoicing.SellerPaymentAccountChanged,
    rating.BillRunClosed,
)

REGISTRY: dict[str, type[EventData]] = {model.event_type: model for model in EVENT_MODELS}


def model_for(event_type: str) -> type[EventData] | None:
    return REGISTRY.get(event_type)
