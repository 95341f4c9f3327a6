"""The acknowledgements of the providers' webhooks (the providers read only the status; the body is for the record)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StripeAck(BaseModel):
    """A Stripe event received and applied (or already applied)."""

    received: str = Field(description="The Stripe event's id.")
    effect: str = Field(description="What the event did here, e.g. `duplicate` for an event already applied, or `ignored`.")


class GoCardlessAck(BaseModel):
    """The events of a GoCardless webhook, each received and applied (or already applied)."""

    received: dict[str, str] = Field(description="What each event did here, by the GoCardless event's id (`duplicate` for one already applied).")
