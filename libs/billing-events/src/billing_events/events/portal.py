"""Events emitted by the portal."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from billing_events import topics
from billing_events.envelope import EventData

PortalRole = Literal["partner_admin", "partner_finance", "customer_admin", "customer_viewer"]


class PortalSignInLinkIssued(EventData):
    """A one-time sign-in link for a portal user, for notify to email in the partner's brand.

    The link is single use and expires at `expires_at` (minutes): it is a credential for that
    short while, so notify sends it to `email` only. `invitation` is true for the first link of a
    newly invited user (the mail then says who invited them)."""

    event_type: ClassVar[str] = "billing.portal.sign_in_link_issued.v1"
    topic: ClassVar[topics.Topic] = topics.NOTIFICATIONS

    user_id: str
    email: str = Field(max_length=254)
    name: str | None = None
    role: PortalRole
    account_id: str | None = Field(default=None, description="The billing account of a customer's contact; absent for a partner's staff.")
    link: str = Field(description="The sign-in URL (one use).")
    expires_at: AwareDatetime
    invitation: bool = False
    invited_by: str | None = None

    def partition_key(self) -> str:
        return self.user_id
