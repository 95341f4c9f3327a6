"""The billing platform's event contract."""

from billing_events.envelope import (
    CloudEvent,
    EnvelopeError,
    EventData,
    KafkaMessage,
    Part,
    attributes_from_headers,
    from_kafka,
    new_event,
    to_kafka,
)
from billing_events.events.auth import ApiKeyIssued, ApiKeyRevoked
from billing_events.events.dunning import (
    AccountReinstated,
    AccountSuspended,
    DunningCaseClosed,
    DunningCaseOpened,
    DunningStepReached,
    PaymentRetryRequested,
)
from billing_events.events.ingest import (
    Address,
    CustomerUpserted,
    ObservedItem,
    QuantityObserved,
    SubscriptionCancelled,
    SubscriptionChanged,
    SubscriptionOrdered,
    UsageRecorded,
)
from billing_events.events.invoicing import (
    ComparisonReportReady,
    CreditNoteIssued,
    DocumentLink,
    InvoiceIssued,
    InvoiceLine,
    InvoiceSettled,
    Party,
    TaxBreakdown,
)
from billing_events.events.notify import NotificationDelivered
from billing_events.events.payments import MandateChanged, PaymentFailed, PaymentRefunded, PaymentSucceeded
from billing_events.events.rating import ChargesRated, PeriodClosed, RatedLine
from billing_events.ids import account_id, derived_event_id, subscription_id
from billing_events.money import DecimalStr, Money
from billing_events.registry import EVENT_MODELS, REGISTRY, model_for

__all__ = [
    "Address",
    "AccountReinstated",
    "AccountSuspended",
    "ApiKeyIssued",
    "ApiKeyRevoked",
    "ChargesRated",
    "ComparisonReportReady",
    "CloudEvent",
    "CreditNoteIssued",
    "CustomerUpserted",
    "DecimalStr",
    "DocumentLink",
    "DunningCaseClosed",
    "DunningCaseOpened",
    "DunningStepReached",
    "EVENT_MODELS",
    "EnvelopeError",
    "EventData",
    "InvoiceIssued",
    "InvoiceLine",
    "InvoiceSettled",
    "KafkaMessage",
    "MandateChanged",
    "Money",
    "NotificationDelivered",
    "ObservedItem",
    "Part",
    "Party",
    "PaymentFailed",
    "PaymentRefunded",
    "PaymentRetryRequested",
    "PaymentSucceeded",
    "PeriodClosed",
    "QuantityObserved",
    "REGISTRY",
    "RatedLine",
    "SubscriptionCancelled",
    "SubscriptionChanged",
    "SubscriptionOrdered",
    "TaxBreakdown",
    "UsageRecorded",
    "account_id",
    "attributes_from_headers",
    "derived_event_id",
    "from_kafka",
    "model_for",
    "new_event",
    "subscription_id",
    "to_kafka",
]
