"""Setting up payment methods for buyers and following them through the providers' webhooks.

A card is saved through a Stripe SetupIntent that the buyer's browser confirms with Stripe.js, or
on Stripe Checkout's hosted page in setup mode; a direct debit mandate through a GoCardless billing
request whose hosted page the payer fills in. Neither card nor bank details reach this service.
Bank transfer needs no setup. When the browser comes back from the hosted page, `confirm_method`
reads the outcome from the provider (the webhook says the same, whichever comes first). The method
activated last becomes the buyer's default (collection has always used the newest one); the buyer
may choose another or remove one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CollectingMethodChanged, MandateChanged, derived_event_id
from billing_runtime.errors import Conflict, NotFound, Unprocessable
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from payments.invoice import repository as invoice_repo
from payments.keys import provider_key
from payments.methods import repository as repo
from payments.methods.schemas import MethodType, PaymentMethodIn, PaymentMethodOut
from payments.providers import service as providers
from payments.providers.gateways import Gateways, ProviderRefused, ProviderUnavailable
from payments.providers.service import ProviderUnavailableError

tracer = trace.get_tracer(__name__)
METHOD_CHANGES = Counter("billing_payment_methods_total", "Payment method state changes, by type and status", ["type", "status"])
SETUP_CALLS = Counter(
    "billing_payment_method_provider_calls_total",
    "Provider calls setting up, confirming or removing a buyer's payment method, by provider, operation and result (ok, unavailable, refused)",
    ["provider", "operation", "result"],
)
start_at_zero(SETUP_CALLS, ("stripe", "gocardless"), ("setup", "confirm", "remove", "webhook_card"), ("ok", "unavailable", "refused"))
COLLECTING_ANNOUNCED = Counter(
    "billing_collecting_method_changes_total", "CollectingMethodChanged emitted, by the method collection uses now (card, direct_debit, none)", ["method"]
)
start_at_zero(COLLECTING_ANNOUNCED, ("card", "direct_debit", "none"))

PROVIDER_OF: dict[MethodType, str] = {MethodType.CARD: "stripe", MethodType.DIRECT_DEBIT: "gocardless", MethodType.BANK_TRANSFER: "bank_transfer"}


class MethodIdConflict(Conflict):
    code = "payment_method_id_conflict"


class MethodNotFound(NotFound):
    code = "payment_method_not_found"


class ProviderRefusedError(Unprocessable):
    code = "provider_refused"


class MethodNotActive(Conflict):
    code = "payment_method_not_active"


@contextmanager
def setup_call(provider: str, operation: str, *, unavailable: str, refused: str) -> Iterator[None]:
    """A call to the provider on the buyer's request, counted by its result: no answer is a 503
    naming what the buyer can do (`unavailable`), a refusal a 422 with the provider's code."""
    try:
        yield
    except ProviderUnavailable as exc:
        SETUP_CALLS.labels(provider, operation, "unavailable").inc()
        raise ProviderUnavailableError(f"{provider} did not answer; {unavailable}") from exc
    except ProviderRefused as exc:
        SETUP_CALLS.labels(provider, operation, "refused").inc()
        raise ProviderRefusedError(f"{provider} {refused}: {exc}", provider_code=exc.code) from exc
    SETUP_CALLS.labels(provider, operation, "ok").inc()


def method_out(row: Any) -> PaymentMethodOut:
    details = dict(row.details or {})
    secret, authorisation, checkout = details.pop("client_secret", None), details.pop("authorisation_url", None), details.pop("checkout_url", None)
    return PaymentMethodOut(
        method_id=row.method_id,
        account_id=row.account_id,
        type=row.type,
        provider=row.provider,
        status=row.status,
        client_secret=secret,
        authorisation_url=authorisation,
        setup_url=(checkout or authorisation) if row.status == "pending" else None,
        method_ref=row.method_ref,
        is_default=row.is_default,
        details=details,
        removed_at=row.removed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def add_method(runtime: ServiceRuntime, gateways: Gateways, tenant: str, account_id: str, body: PaymentMethodIn) -> tuple[PaymentMethodOut, bool]:
    """Set up a payment method; the same id again returns it (finishing a setup an outage cut short)."""
    provider = PROVIDER_OF[body.type]
    with tracer.start_as_current_span("add_payment_method", attributes={"billing.tenant": tenant, "billing.method_type": body.type.value}):
        async with runtime.transaction(own=True) as session:  # committed before and after the provider calls
            creds = None if provider == "bank_transfer" else await providers.credentials(runtime, session, tenant, provider)
            now = runtime.clock.now()
            created = await repo.insert_method(
                session,
                {
                    "tenant": tenant,
                    "method_id": body.id,
                    "account_id": account_id,
                    "type": body.type.value,
                    "provider": provider,
                    "status": "active" if provider == "bank_transfer" else "pending",
                    "details": {},
                    "created_at": now,
                    "updated_at": now,
                },
            )
            row = await repo.get_method(session, tenant, body.id)
            if row.account_id != account_id or row.type != body.type:
                raise MethodIdConflict(f"payment method {body.id!r} exists for another buyer or type", field="id")
            customer = await repo.get_customer(session, tenant, account_id, provider)
        if created:
            METHOD_CHANGES.labels(body.type.value, row.status).inc()
        if creds is None or row.setup_ref is not None:
            return method_out(row), created

        metadata = {"tenant": tenant, "account_id": account_id, "method_id": body.id}
        with setup_call(provider, "setup", unavailable="send the same request again", refused="refused the setup"):
            if customer is None:
                gateway = gateways.stripe if provider == "stripe" else gateways.gocardless
                customer = await gateway.create_customer(creds.api_key, provider_key("customer", tenant, account_id, provider), body.email, body.name, metadata)
            if provider == "stripe" and body.redirect_uri:
                setup_ref, url = await gateways.stripe.create_checkout_setup(
                    creds.api_key, customer, provider_key("checkout", tenant, body.id), metadata, body.redirect_uri, body.cancel_uri, body.currency
                )
                details: dict[str, Any] = {"checkout_url": url}
            elif provider == "stripe":
                setup_ref, secret = await gateways.stripe.create_setup_intent(creds.api_key, customer, provider_key("setup", tenant, body.id), metadata)
                details = {"client_secret": secret}
            else:
                setup_ref, url = await gateways.gocardless.start_mandate(
                    creds.api_key, customer, body.currency, provider_key("mandate", tenant, body.id), metadata, body.redirect_uri
                )
                details = {"authorisation_url": url}

        async with runtime.transaction(own=True) as session:  # committed before and after the provider calls
            await repo.insert_customer(session, tenant, account_id, provider, customer)
            await repo.update_method(session, tenant, body.id, customer_ref=customer, setup_ref=setup_ref, details=details, updated_at=runtime.clock.now())
            row = await repo.get_method(session, tenant, body.id)
        return method_out(row), created


async def list_methods(session: AsyncSession, tenant: str, account_id: str) -> list[PaymentMethodOut]:
    return [method_out(r) for r in await repo.list_methods(session, tenant, account_id)]


async def get_method(session: AsyncSession, tenant: str, account_id: str, method_id: str) -> PaymentMethodOut:
    row = await repo.get_method(session, tenant, method_id, account_id=account_id)
    if row is None:
        raise MethodNotFound(f"no payment method {method_id!r} for this account")
    return method_out(row)


async def _newly_active(session: AsyncSession, tenant: str, account_id: str, method_id: str) -> None:
    """A method just activated becomes the buyer's default (collection uses it)."""
    await repo.lock_account_methods(session, tenant, account_id)
    await repo.make_default(session, tenant, account_id, method_id)


async def _card_active(runtime: ServiceRuntime, session: AsyncSession, row: Any, payment_method: str | None, card: dict[str, Any] | None) -> None:
    details = {**(row.details or {}), **(card or {})}
    await repo.update_method(
        session, row.tenant, row.method_id, status="active", method_ref=payment_method or row.method_ref, details=details, updated_at=runtime.clock.now()
    )
    if row.status != "active":
        METHOD_CHANGES.labels("card", "active").inc()
        await _newly_active(session, row.tenant, row.account_id, row.method_id)
    if row.status != "active" or details != (row.details or {}):  # newly saved, or its brand and digits just read
        await announce_collecting_method(runtime, session, row.tenant, row.account_id)


async def webhook_card(gateways: Gateways, api_key: str, payment_method: str) -> dict[str, Any] | None:
    """The brand, last four digits and expiry of the card a `setup_intent.succeeded` webhook
    saved, read from its PaymentMethod through the SDK before the webhook's transaction (the event
    names the method, not its card). None when Stripe does not answer or refuses: the card is
    saved without them, as before, and `…/confirm` reads them later."""
    try:
        card = await gateways.stripe.card_details(api_key, payment_method)
    except ProviderUnavailable:
        SETUP_CALLS.labels("stripe", "webhook_card", "unavailable").inc()
        return None
    except ProviderRefused:
        SETUP_CALLS.labels("stripe", "webhook_card", "refused").inc()
        return None
    SETUP_CALLS.labels("stripe", "webhook_card", "ok").inc()
    return card


async def card_setup_finished(
    runtime: ServiceRuntime,
    session: AsyncSession,
    tenant: str,
    setup_ref: str,
    payment_method: str | None,
    ok: bool,
    metadata: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
) -> str:
    """A SetupIntent succeeded (the card is saved: the method becomes active, with `card`: its
    brand, last four digits and expiry when read) or failed. One made by Checkout is found by the
    method id in its metadata (the method's `setup_ref` is the session)."""
    row = await repo.find_method(session, tenant, "stripe", setup_ref=setup_ref)
    if row is None and metadata and metadata.get("method_id") and metadata.get("tenant") == tenant:
        row = await repo.get_method(session, tenant, str(metadata["method_id"]), account_id=metadata.get("account_id"), lock=True)
    if row is None or row.provider != "stripe":
        return "unknown_setup_intent"
    status = "active" if ok else "failed"
    if row.status == "active" or row.status == status or row.removed_at is not None:
        return "already_applied"  # a late setup_failed never undoes a saved card
    if ok:
        await _card_active(runtime, session, row, payment_method, card)
    elif not row.setup_ref or not row.setup_ref.startswith("cs_"):  # Checkout lets the buyer try another card: still pending
        await repo.update_method(session, tenant, row.method_id, status=status, updated_at=runtime.clock.now())
        METHOD_CHANGES.labels("card", status).inc()
    else:
        return "ignored"
    return f"method_{status}"


async def confirm_method(runtime: ServiceRuntime, gateways: Gateways, tenant: str, account_id: str, method_id: str) -> PaymentMethodOut:
    """The buyer's browser is back from the provider's hosted page: ask the provider (through its
    SDK) what became of the setup and apply it. A method already decided is answered as it is;
    a card saved without its details yet gets them."""
    with tracer.start_as_current_span("confirm_payment_method", attributes={"billing.tenant": tenant}):
        async with runtime.transaction(own=True) as session:
            row = await repo.get_method(session, tenant, method_id, account_id=account_id)
            if row is None:
                raise MethodNotFound(f"no payment method {method_id!r} for this account")
            needs_card = row.provider == "stripe" and row.status == "active" and "last4" not in (row.details or {})
            if row.setup_ref is None or row.removed_at is not None or (row.status != "pending" and not needs_card):
                return method_out(row)
            creds = await providers.credentials(runtime, session, tenant, row.provider)
        with setup_call(row.provider, "confirm", unavailable="ask again", refused="refused to say"):
            if row.provider == "stripe":
                status, payment_method, card = await gateways.stripe.saved_card(creds.api_key, row.setup_ref)
                mandate: str | None = None
            else:
                mandate = await gateways.gocardless.billing_request_mandate(creds.api_key, row.setup_ref)
                status, _ = await gateways.gocardless.mandate(creds.api_key, mandate) if mandate else ("pending", {})
        async with runtime.transaction() as session:
            row = await repo.get_method(session, tenant, method_id, account_id=account_id, lock=True)
            if row.provider == "stripe" and status == "active":
                await _card_active(runtime, session, row, payment_method, card)
            elif row.provider == "stripe" and status == "failed" and row.status == "pending":
                await repo.update_method(session, tenant, method_id, status="failed", updated_at=runtime.clock.now())
                METHOD_CHANGES.labels("card", "failed").inc()
            elif mandate is not None:
                await mandate_changed(runtime, session, tenant, method_id, mandate, status)
            return method_out(await repo.get_method(session, tenant, method_id, account_id=account_id))


async def set_default(runtime: ServiceRuntime, tenant: str, account_id: str, method_id: str) -> PaymentMethodOut:
    """The buyer's choice of method to collect from; the same choice again changes nothing."""
    with tracer.start_as_current_span("set_default_payment_method", attributes={"billing.tenant": tenant}):
        async with runtime.transaction() as session:
            rows = {r.method_id: r for r in await repo.lock_account_methods(session, tenant, account_id)}
            row = rows.get(method_id)
            if row is None or row.removed_at is not None:
                raise MethodNotFound(f"no payment method {method_id!r} for this account")
            if row.status != "active" or row.type == MethodType.BANK_TRANSFER:
                raise MethodNotActive(f"payment method {method_id!r} is {row.status}: only an active card or mandate can be the default", field="method_id")
            if not row.is_default:
                await repo.make_default(session, tenant, account_id, method_id)
                await announce_collecting_method(runtime, session, tenant, account_id)
            return method_out(await repo.get_method(session, tenant, method_id, account_id=account_id))


async def remove_method(runtime: ServiceRuntime, gateways: Gateways, tenant: str, account_id: str, method_id: str) -> PaymentMethodOut:
    """The buyer removes a method: the card is detached at Stripe, the mandate cancelled at
    GoCardless (MandateChanged `cancelled`), and it is collected from no more. If it was the
    default, the most recently activated remaining one becomes the default. Removing it again
    answers the same."""
    with tracer.start_as_current_span("remove_payment_method", attributes={"billing.tenant": tenant}):
        async with runtime.transaction(own=True) as session:
            row = await repo.get_method(session, tenant, method_id, account_id=account_id)
            if row is None:
                raise MethodNotFound(f"no payment method {method_id!r} for this account")
            if row.removed_at is not None:
                return method_out(row)
            creds = None if row.provider == "bank_transfer" or not row.method_ref else await providers.credentials(runtime, session, tenant, row.provider)
        if creds is not None:
            with setup_call(row.provider, "remove", unavailable="send the same request again", refused="refused the removal"):
                if row.provider == "stripe":
                    await gateways.stripe.detach(creds.api_key, row.method_ref)
                elif row.status not in ("cancelled", "failed", "expired"):
                    await gateways.gocardless.cancel_mandate(creds.api_key, row.method_ref)
        async with runtime.transaction() as session:
            await repo.lock_account_methods(session, tenant, account_id)
            row = await repo.get_method(session, tenant, method_id, account_id=account_id)
            if row.removed_at is None:
                if row.provider == "gocardless" and row.method_ref and row.status not in ("cancelled", "failed", "expired"):
                    await mandate_changed(runtime, session, tenant, method_id, row.method_ref, "cancelled")
                status = row.status if row.status in ("failed", "expired") else "cancelled"
                now = runtime.clock.now()
                await repo.update_method(session, tenant, method_id, status=status, is_default=False, removed_at=now, updated_at=now)
                METHOD_CHANGES.labels(row.type, "removed").inc()
                if row.is_default:
                    successor = await repo.collecting_method(session, tenant, account_id)
                    if successor is not None:
                        await repo.make_default(session, tenant, account_id, successor.method_id)
                await announce_collecting_method(runtime, session, tenant, account_id)
            return method_out(await repo.get_method(session, tenant, method_id, account_id=account_id))


async def mandate_changed(runtime: ServiceRuntime, session: AsyncSession, tenant: str, method_id: str, mandate_id: str, status: str) -> str:
    """Apply a mandate's current status (as GoCardless has it now, so an old event read late
    changes nothing wrong) and emit MandateChanged when it changed."""
    row = await repo.get_method(session, tenant, method_id, lock=True)
    if row is None:
        return "unknown_mandate"
    if row.removed_at is not None:
        return "already_removed"  # the buyer removed it, and its mandate was cancelled then
    if row.status == status and row.method_ref == mandate_id:
        return "already_applied"
    await repo.update_method(session, tenant, method_id, status=status, method_ref=mandate_id, updated_at=runtime.clock.now())
    METHOD_CHANGES.labels("direct_debit", status).inc()
    if status == "active" and row.status != "active":
        await _newly_active(session, tenant, row.account_id, method_id)
    seller_id = await invoice_repo.seller_of(session, tenant, row.account_id) or tenant
    event = MandateChanged(mandate_id=mandate_id, seller_id=seller_id, account_id=row.account_id, provider="gocardless", status=status)
    event_id = derived_event_id("mandate_changed", tenant, mandate_id, status)
    await runtime.outbox.add(session, runtime.event(event, tenant=tenant, event_id=event_id, subject=mandate_id))
    if "active" in (status, row.status):  # only a mandate becoming or ceasing to be active moves what collection uses
        await announce_collecting_method(runtime, session, tenant, row.account_id, seller_id=seller_id)
    return f"mandate_{status}"


async def announce_collecting_method(runtime: ServiceRuntime, session: AsyncSession, tenant: str, account_id: str, *, seller_id: str | None = None) -> None:
    """Emit CollectingMethodChanged: the card (brand, last four digits) or mandate collection now
    uses for the buyer (`collecting_method`), or none. Called in the transaction of each change that
    can move it (a card saved or its details read, a mandate's status, a default chosen, a method
    removed), after the change; invoicing prints it as the payment instructions of the buyer's
    next invoices."""
    method = await repo.collecting_method(session, tenant, account_id)
    details = dict(method.details or {}) if method is not None else {}
    now = runtime.clock.now()
    event = CollectingMethodChanged(
        seller_id=seller_id or await invoice_repo.seller_of(session, tenant, account_id) or tenant,
        account_id=account_id,
        changed_at=now,
        method_id=method.method_id if method is not None else None,
        method=method.type if method is not None else None,
        provider=method.provider if method is not None else None,
        card_brand=details.get("brand") if method is not None and method.type == "card" else None,
        card_last4=details.get("last4") if method is not None and method.type == "card" else None,
        card_exp_month=details.get("exp_month") if method is not None and method.type == "card" else None,
        card_exp_year=details.get("exp_year") if method is not None and method.type == "card" else None,
        mandate_id=method.method_ref if method is not None and method.type == "direct_debit" else None,
    )
    event_id = derived_event_id("collecting_method_changed", tenant, account_id, event.method_id or "none", event.card_last4 or "", now.isoformat())
    await runtime.outbox.add(session, runtime.event(event, tenant=tenant, event_id=event_id, subject=account_id))
    COLLECTING_ANNOUNCED.labels(event.method or "none").inc()
