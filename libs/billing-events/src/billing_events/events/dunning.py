"""Events emitted by dunning: steps reached, retries, suspension and reinstatement."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from billing_events import topics
from billing_events.envelope import EventData
from billing_events.money import Money

DunningAction = Literal["remind", "retry", "final_notice", "suspend"]


class DunningStepReached(EventData):
    event_type: ClassVar[str] = "billing.dunning.step_reached.v1"
    topic: ClassVar[topics.Topic] = topics.DUNNING

    case_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    step: int
    action: DunningAction
    days_overdue: int
    amount_overdue: Money
    reached_on: date

    def partition_key(self) -> str:
        return self.account_id


class PaymentRetryRequested(EventData):
    event_type: ClassVar[str] = "billing.payment.retry_requested.v1"
    topic: ClassVar[topics.Topic] = topics.DUNNING

    case_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    attempt: int

    def partition_key(self) -> str:
        return self.account_id


class AccountSuspended(EventData):
    event_type: ClassVar[str] = "billing.account.suspended.v1"
    topic: ClassVar[topics.Topic] = topics.DUNNING

    account_id: str
    seller_id: str
    case_id: str
    suspended_on: date
    cascaded_from: str | None = None

    def partition_key(self) -> str:
        return self.account_id


class AccountReinstated(EventData):
    event_type: ClassVar[str] = "billing.account.reinstated.v1"
    topic: ClassVar[topics.Topic] = topics.DUNNING

    account_id: str
    seller_id: str
    case_id: str
    reinstated_on: date

    def partition_key(self) -> str:
        return self.account_id


class DunningCaseOpened(EventData):
    event_type: ClassVar[str] = "billing.dunning.case_opened.v1"
    topic: ClassVar[topics.Topic] = topics.DUNNING

    case_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    due_on: date
    amount_open: Money

    def partition_key(self) -> str:
        return self.account_id


class DunningCaseClosed(EventData):
    event_type: ClassVar[str] = "billing.dunning.case_closed.v1"
    topic: ClassVar[topics.Topic] = topics.DUNNING

    case_id: str
    invoice_id: str
    seller_id: str
    account_id: str
    closed_on: date
    reason: Literal["paid", "credited", "written_off"]

    def partition_key(self) -> str:
        return self.account_id
