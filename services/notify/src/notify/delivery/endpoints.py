"""Partner-facing HTTP: the delivery log of the mail sent in the seller's name."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime

from fastapi import APIRouter, Query

from billing_runtime.api import Read, Runtime, Tenant, page_of
from billing_runtime.errors import BillingError, NotFound
from notify.delivery import repository as repo
from notify.delivery.models import Delivery
from notify.delivery.schemas import DeliveryDetail, DeliveryOut, DeliveryPage, DeliveryStatus
from notify.delivery.service import PORTAL_SIGN_IN

SIGN_IN_TOKEN = re.compile(r"(/sign-in/)[A-Za-z0-9_-]+")
router = APIRouter(prefix="/v1", tags=["deliveries"])


class InvalidCursor(BillingError):
    code = "invalid_cursor"


def _cursor(delivery: Delivery) -> str:
    raw = f"{delivery.created_at.isoformat()}|{delivery.delivery_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, delivery_id = raw.split("|", 1)
        at = datetime.fromisoformat(created_at)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this API returned", field="cursor") from exc
    if at.tzinfo is None:
        raise InvalidCursor("cursor is not one this API returned", field="cursor")
    return at, delivery_id


@router.get("/deliveries", dependencies=[Read], response_model=DeliveryPage)
async def list_deliveries(
    tenant: Tenant,
    runtime: Runtime,
    account_id: str | None = None,
    status: DeliveryStatus | None = None,
    template: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = None,
) -> DeliveryPage:
    after = _after(cursor) if cursor else None
    async with runtime.sessions() as session:
        rows = await repo.list_deliveries(
            session,
            tenant,
            account_id=account_id,
            status=status.value if status else None,
            template=template,
            after=after,
            limit=limit + 1,
        )
    page, next_cursor = page_of(rows, limit, _cursor)
    return DeliveryPage(items=[DeliveryOut.model_validate(r.model_dump()) for r in page], limit=limit, next_cursor=next_cursor)


@router.get("/deliveries/{delivery_id}", dependencies=[Read], response_model=DeliveryDetail)
async def get_delivery(delivery_id: str, tenant: Tenant, runtime: Runtime) -> DeliveryDetail:
    async with runtime.sessions() as session:
        delivery = await repo.get_delivery(session, tenant, delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id!r}", code="delivery_not_found")
    detail = DeliveryDetail.model_validate(delivery.model_dump())
    if detail.template == PORTAL_SIGN_IN:
        # The link is its recipient's credential while it lasts: the partner's log shows the email
        # without it (a partner's staff could otherwise sign in as their customer, unaudited).
        detail = detail.model_copy(update={"body_text": _without_link(detail.body_text), "body_html": _without_link(detail.body_html)})
    return detail


def _without_link(body: str) -> str:
    return SIGN_IN_TOKEN.sub(r"\1…", body)
