"""The portal's API for partners' systems: invite people (a partner admin key)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from billing_runtime.api import Admin, Caller, Runtime
from portal import accounts, hosts
from portal.config import Settings

router = APIRouter(prefix="/v1/portal", tags=["portal"])


class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    role: Literal["partner_admin", "partner_finance", "customer_admin", "customer_viewer"]
    customer_id: str | None = Field(default=None, max_length=200, description="The partner's id of the customer (customer roles only).")
    locale: str | None = Field(default=None, max_length=20, description="The user's language for the pages (e.g. `de`); unset: the browser's.")


class InvitationOut(BaseModel):
    user_id: str
    email: str
    role: str
    account_id: str | None
    link_expires_in_minutes: int


@router.post("/invitations", dependencies=[Admin], response_model=InvitationOut, status_code=201)
async def post_invitation(body: InvitationIn, caller: Caller, runtime: Runtime, request: Request) -> InvitationOut:
    """Invite someone to the partner's portal: notify emails them a one-time sign-in link in the
    partner's brand. Inviting the same address again sends a new link (same user, same role)."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    async with runtime.transaction() as session:
        user, _ = await accounts.invite(
            runtime,
            session,
            tenant=caller.tenant,
            email=body.email,
            name=body.name,
            role=body.role,
            customer_id=body.customer_id,
            invited_by=f"api key {caller.key_id}",
            portal_url=await hosts.portal_url(request, caller.tenant),
            link_minutes=settings.link_minutes,
            locale=body.locale,
        )
    return InvitationOut(user_id=user.user_id, email=user.email, role=user.role, account_id=user.account_id, link_expires_in_minutes=settings.link_minutes)
