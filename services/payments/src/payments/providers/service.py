"""A seller's provider accounts: each partner collects into its own Stripe or GoCardless account."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.errors import BillingError
from billing_runtime.service import ServiceRuntime
from payments.providers import repository as repo
from payments.providers.schemas import ProviderAccountIn, ProviderAccountOut

tracer = trace.get_tracer(__name__)


class ProviderNotConfigured(BillingError):
    status_code = 409
    code = "provider_not_configured"


def account_out(provider: str, row: Any) -> ProviderAccountOut:
    return ProviderAccountOut(
        provider=provider,  # type: ignore[arg-type]
        api_key_last4=row.api_key[-4:],
        webhook_secret_last4=row.webhook_secret[-4:],
        webhook_url_path=f"/v1/webhooks/{provider}/{row.tenant}",
        updated_at=row.updated_at,
    )


async def set_account(runtime: ServiceRuntime, session: AsyncSession, tenant: str, provider: str, body: ProviderAccountIn) -> ProviderAccountOut:
    """Store (or replace) the seller's credentials at `provider`."""
    with tracer.start_as_current_span("set_provider_account", attributes={"billing.tenant": tenant, "billing.provider": provider}):
        await repo.upsert(session, {
            "tenant": tenant, "provider": provider, "api_key": body.api_key.get_secret_value(),
            "webhook_secret": body.webhook_secret.get_secret_value(), "updated_at": runtime.clock.now(),
        })
        return account_out(provider, await repo.get(session, tenant, provider))


async def credentials(session: AsyncSession, tenant: str, provider: str) -> Any:
    """The seller's account at `provider`, or 409 `provider_not_configured`."""
    row = await repo.get(session, tenant, provider)
    if row is None:
        raise ProviderNotConfigured(f"no {provider} account is set for {tenant}: PUT /v1/providers/{provider} first", field="provider")
    return row
