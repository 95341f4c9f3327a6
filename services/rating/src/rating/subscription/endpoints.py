"""Subscriptions as rated: override a subscription's billing policy; see its effective dates."""

from __future__ import annotations

from fastapi import APIRouter

from billing_runtime.api import ForAccount, OwnAccount, Read, Runtime, Tenant, Write, own_account
from rating.catalogue import ordercheck
from rating.config import Settings
from rating.policy import PolicyIn
from rating.subscription import service
from rating.subscription.schemas import AccountSubscriptionPage, SubscriptionOut

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
accounts = APIRouter(prefix="/v1/accounts", tags=["subscriptions"])


@accounts.get("/{account_id}/subscriptions", dependencies=[Read, ForAccount], response_model=AccountSubscriptionPage)
async def list_account_subscriptions(account_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> AccountSubscriptionPage:
    """The buyer's subscriptions with the caller (its seller): product, quantity in force today,
    monthly or annual term, status. A key restricted to one account: only its own (another: 404)."""
    own_account(account, account_id)
    async with runtime.sessions() as session:
        items = await service.account_subscriptions(session, tenant, _distributor(runtime), account_id, runtime.clock.now().date())
    return AccountSubscriptionPage(items=items, limit=len(items), next_cursor=None)


@router.get("/{subscription_id}", dependencies=[Read], response_model=SubscriptionOut)
async def get_subscription(subscription_id: str, tenant: Tenant, runtime: Runtime[Settings]) -> SubscriptionOut:
    async with runtime.sessions() as session:
        found = await service.describe(session, tenant, _distributor(runtime), subscription_id)
        # An order rating cannot bill (no price in the buyer's currency) is visible here, not only in the bill run.
        on = max(found.billing_starts_on, runtime.clock.now().date())
        priced = await ordercheck.pricing(session, tenant, _distributor(runtime), found.product_code, on, account_id=found.account_id)
        return found.model_copy(update={"pricing": priced})


@router.put("/{subscription_id}/policy", dependencies=[Write], response_model=SubscriptionOut)
async def put_policy(subscription_id: str, body: PolicyIn, tenant: Tenant, runtime: Runtime[Settings]) -> SubscriptionOut:
    """Override knobs of the product's policy for this subscription (the same body again changes nothing)."""
    async with runtime.transaction() as session:
        await service.override_policy(runtime, session, tenant, _distributor(runtime), subscription_id, body)
        return await service.describe(session, tenant, _distributor(runtime), subscription_id)


def _distributor(runtime: Runtime[Settings]) -> str | None:
    return runtime.settings.distributor_id
