"""Subscriptions as rated: override a subscription's billing policy; see its effective dates."""

from __future__ import annotations

from fastapi import APIRouter

from billing_runtime.api import Read, Runtime, Tenant, Write
from rating.catalogue import ordercheck
from rating.policy import PolicyIn
from rating.subscription import service
from rating.subscription.schemas import SubscriptionOut

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.get("/{subscription_id}", dependencies=[Read], response_model=SubscriptionOut)
async def get_subscription(subscription_id: str, tenant: Tenant, runtime: Runtime) -> SubscriptionOut:
    async with runtime.sessions() as session:
        found = await service.describe(session, tenant, _distributor(runtime), subscription_id)
        # An order rating cannot bill (no price in the buyer's currency) is visible here, not only in the bill run.
        on = max(found.billing_starts_on, runtime.clock.now().date())
        priced = await ordercheck.pricing(session, tenant, _distributor(runtime), found.product_code, on, account_id=found.account_id)
        return found.model_copy(update={"pricing": priced})


@router.put("/{subscription_id}/policy", dependencies=[Write], response_model=SubscriptionOut)
async def put_policy(subscription_id: str, body: PolicyIn, tenant: Tenant, runtime: Runtime) -> SubscriptionOut:
    """Override knobs of the product's policy for this subscription (the same body again changes nothing)."""
    async with runtime.transaction() as session:
        await service.override_policy(runtime, session, tenant, _distributor(runtime), subscription_id, body)
        return await service.describe(session, tenant, _distributor(runtime), subscription_id)


def _distributor(runtime: Runtime) -> str | None:
    return getattr(runtime.settings, "distributor_id", None)
