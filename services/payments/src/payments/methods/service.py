"""Setting up payment methods for buyers and following them through the providers' webhooks.

A card is saved through a Stripe SetupIntent that the buyer's browser confirms with Stripe.js; a
direct debit mandate through a GoCardless billing request whose hosted page the payer fills in.
Neither card nor bank details reach this service. Bank transfer needs no setup.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import MandateChanged, derived_event_id
from billing_runtime.errors import BillingError, Conflict, NotFound
from billing_runtime.service import ServiceRuntime
from payments.invoice import repository as invoice_repo
from payments.keys import provider_key
from payments.methods import repository as repo
from payments.methods.schemas import PaymentMethodIn, PaymentMethodOut
from payments.providers import service as providers
from payments.providers.gateways import Gateways, ProviderRefused, ProviderUnavailable

tracer = trace.get_tracer(__name__)
METHOD_CHANGES = Counter("billing_payment_methods_total", "Payment method state changes, by type and status", ["type", "status"])

PROVIDER_OF = {"card": "stripe", "direct_debit": "gocardless", "bank_transfer": "bank_transfer"}


class MethodIdConflict(Conflict):
    code = "payment_method_id_conflict"


class MethodNotFound(NotFound):
    code = "payment_method_not_found"


class ProviderUnavailableError(BillingError):
    status_code = 503
    code = "provider_unavailable"


class ProviderRefusedError(BillingError):
    status_code = 422
    code = "provider_refused"


def method_out(row: Any) -> PaymentMethodOut:
    details = dict(row.details or {})
    return PaymentMethodOut(
        method_id=row.method_id, account_id=row.account_id, type=row.type, provider=row.provider, status=row.status,
        client_secret=details.pop("client_secret", None), authorisation_url=details.pop("authorisation_url", None),
        method_ref=row.method_ref, details=details, created_at=row.created_at, updated_at=row.updated_at,
    )


async def add_method(runtime: ServiceRuntime, gateways: Gateways, tenant: str, account_id: str, body: PaymentMethodIn) -> tuple[PaymentMethodOut, bool]:
    """Set up a payment method; the same id again returns it (finishing a setup an outage cut short)."""
    provider = PROVIDER_OF[body.type]
    with tracer.start_as_current_span("add_payment_method", attributes={"billing.tenant": tenant, "billing.method_type": body.type}):
        async with runtime.transaction(own=True) as session:  # committed before and after the provider calls
            creds = None if provider == "bank_transfer" else await providers.credentials(runtime, session, tenant, provider)
            now = runtime.clock.now()
            created = await repo.insert_method(session, {
                "tenant": tenant, "method_id": body.id, "account_id": account_id, "type": body.type, "provider": provider,
                "status": "active" if provider == "bank_transfer" else "pending", "details": {}, "created_at": now, "updated_at": now,
            })
            row = await repo.get_method(session, tenant, body.id)
            if row.account_id != account_id or row.type != body.type:
                raise MethodIdConflict(f"payment method {body.id!r} exists for another buyer or type", field="id")
            customer = await repo.get_customer(session, tenant, account_id, provider)
        if created:
            METHOD_CHANGES.labels(body.type, row.status).inc()
        if creds is None or row.setup_ref is not None:
            return method_out(row), created

        metadata = {"tenant": tenant, "account_id": account_id, "method_id": body.id}
        try:
            if customer is None:
                gateway = gateways.stripe if provider == "stripe" else gateways.gocardless
                customer = await gateway.create_customer(creds.api_key, provider_key("customer", tenant, account_id, provider), body.email, body.name, metadata)
            if provider == "stripe":
                setup_ref, secret = await gateways.stripe.create_setup_intent(creds.api_key, customer, provider_key("setup", tenant, body.id), metadata)
                details: dict[str, Any] = {"client_secret": secret}
            else:
                setup_ref, url = await gateways.gocardless.start_mandate(
                    creds.api_key, customer, body.currency, provider_key("mandate", tenant, body.id), metadata, body.redirect_uri
                )
                details = {"authorisation_url": url}
        except ProviderUnavailable as exc:
            raise ProviderUnavailableError(f"{provider} did not answer; send the same request again") from exc
        except ProviderRefused as exc:
            raise ProviderRefusedError(f"{provider} refused the setup: {exc}", provider_code=exc.code) from exc

        async with runtime.transaction(own=True) as session:  # committed before and after the provider calls
            await repo.insert_customer(session, tenant, account_id, provider, customer)
            await repo.update_method(session, tenant, body.id, customer_ref=customer, setup_ref=setup_ref, details=details, updated_at=runtime.clock.now())
            row = await repo.get_method(session, tenant, body.id)
        return method_out(row), created


async def list_methods(session: AsyncSession, tenant: str, account_id: str) -> list[PaymentMethodOut]:
    return [method_out(r) for r in await repo.list_methods(session, tenant, account_id)]


async def card_setup_finished(runtime: ServiceRuntime, session: AsyncSession, tenant: str, setup_ref: str, payment_method: str | None, ok: bool) -> str:
    """A SetupIntent succeeded (the card is saved: the method becomes active) or failed."""
    row = await repo.find_method(session, tenant, "stripe", setup_ref=setup_ref)
    if row is None:
        return "unknown_setup_intent"
    status = "active" if ok else "failed"
    if row.status == "active" or row.status == status:
        return "already_applied"  # a late setup_failed never undoes a saved card
    await repo.update_method(session, tenant, row.method_id, status=status, method_ref=payment_method or row.method_ref, updated_at=runtime.clock.now())
    METHOD_CHANGES.labels("card", status).inc()
    return f"method_{status}"


async def mandate_changed(runtime: ServiceRuntime, session: AsyncSession, tenant: str, method_id: str, mandate_id: str, status: str) -> str:
    """Apply a mandate's current status (as GoCardless has it now, so an old event read late
    changes nothing wrong) and emit MandateChanged when it changed."""
    row = await repo.get_method(session, tenant, method_id, lock=True)
    if row is None:
        return "unknown_mandate"
    if row.status == status and row.method_ref == mandate_id:
        return "already_applied"
    await repo.update_method(session, tenant, method_id, status=status, method_ref=mandate_id, updated_at=runtime.clock.now())
    METHOD_CHANGES.labels("direct_debit", status).inc()
    seller_id = await invoice_repo.seller_of(session, tenant, row.account_id) or tenant
    event = MandateChanged(mandate_id=mandate_id, seller_id=seller_id, account_id=row.account_id, provider="gocardless", status=status)  # type: ignore[arg-type]
    event_id = derived_event_id("mandate_changed", tenant, mandate_id, status)
    await runtime.outbox.add(session, runtime.event(event, tenant=tenant, event_id=event_id, subject=mandate_id))
    return f"mandate_{status}"
