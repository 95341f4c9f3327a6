"""A seller's provider accounts: each partner collects into its own Stripe or GoCardless account."""

from __future__ import annotations

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.crypto import Keyring, SecretUnreadable
from billing_runtime.errors import BillingError, Conflict, Unprocessable
from billing_runtime.service import ServiceRuntime
from payments.providers import repository as repo
from payments.providers.repository import Credentials
from payments.providers.schemas import ProviderAccountIn, ProviderAccountOut

tracer = trace.get_tracer(__name__)


# A webhook secret is an HMAC key: one this short could be guessed offline from one signed body.
# Stripe's (`whsec_` + 32) and GoCardless's (40 characters) are longer.
MIN_WEBHOOK_SECRET_LENGTH = 32


class ProviderNotConfigured(Conflict):
    code = "provider_not_configured"


class ProviderUnavailableError(BillingError):
    """A provider, or the secret to reach it, cannot be used now: the same request again later may succeed."""

    status_code = 503
    code = "provider_unavailable"


class WebhookSecretTooShort(Unprocessable):
    code = "webhook_secret_too_short"


class CredentialsUnreadable(Conflict):
    code = "provider_credentials_unreadable"


class ApiKeyMissing(Unprocessable):
    code = "api_key_missing"


def account_out(provider: str, row: Credentials) -> ProviderAccountOut:
    return ProviderAccountOut(
        provider=provider,
        api_key_last4=row.api_key[-4:],
        webhook_secret_last4=row.webhook_secret[-4:],
        webhook_url_path=f"/v1/webhooks/{provider}/{row.tenant}",
        updated_at=row.updated_at,
    )


async def set_account(runtime: ServiceRuntime, session: AsyncSession, tenant: str, provider: str, body: ProviderAccountIn) -> ProviderAccountOut:
    """Store (or replace) the seller's credentials at `provider`, sealed. A webhook secret shorter
    than 32 characters (an empty one included: anyone could sign with it) is refused."""
    api_key, webhook_secret = body.api_key.get_secret_value().strip(), body.webhook_secret.get_secret_value()
    if not api_key:
        raise ApiKeyMissing(f"api_key is empty: give the {provider} secret key or access token", field="api_key")
    if len(webhook_secret.strip()) < MIN_WEBHOOK_SECRET_LENGTH:
        raise WebhookSecretTooShort(
            f"webhook_secret must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters: copy the endpoint secret {provider} shows",
            field="webhook_secret",
            min_length=MIN_WEBHOOK_SECRET_LENGTH,
        )
    with tracer.start_as_current_span("set_provider_account", attributes={"billing.tenant": tenant, "billing.provider": provider}):
        await repo.upsert(session, keyring(runtime), tenant, provider, api_key, webhook_secret, runtime.clock.now())
        return account_out(provider, await credentials(runtime, session, tenant, provider))


def keyring(runtime: ServiceRuntime) -> Keyring:
    return runtime.sealing()


async def credentials(runtime: ServiceRuntime, session: AsyncSession, tenant: str, provider: str) -> Credentials:
    """The seller's account at `provider`, or 409 `provider_not_configured`."""
    try:
        row = await repo.get(session, keyring(runtime), tenant, provider)
    except SecretUnreadable as exc:
        raise CredentialsUnreadable(
            f"the stored {provider} credentials do not open with this service's keys (SECRETS_KEYS): PUT /v1/providers/{provider} again",
            field="provider",
        ) from exc
    if row is None:
        raise ProviderNotConfigured(f"no {provider} account is set for {tenant}: PUT /v1/providers/{provider} first", field="provider")
    return row
