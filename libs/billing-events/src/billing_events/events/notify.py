"""Events emitted by notify."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime

from billing_events import topics
from billing_events.envelope import EventData


class NotificationDelivered(EventData):
    event_type: ClassVar[str] = "billing.notification.delivered.v1"
    topic: ClassVar[topics.Topic] = topics.NOTIFICATIONS

    notification_id: str
    account_id: str
    seller_id: str
    channel: Literal["email", "webhook"]
    template: str
    recipient: str
    cause_event_id: str
    delivered_at: AwareDatetime

    def partition_key(self) -> str:
        return self.account_id
