"""An end customer's payment methods (`/p/<partner>/payment-methods…`): list them, add a card on
Stripe's hosted page (Checkout in setup mode) or a direct-debit mandate on GoCardless's hosted
billing request flow, remove one, choose the default. Every call goes to payments with the
session's own key, restricted to the customer's account: another account's method id is the
service's 404. Card and bank details go to the provider's page, never through the portal.

Adding: the form (with its CSRF token and a request id drawn when the page was shown, so the same
form sent twice sets up one method) asks payments for the setup, and the browser is sent to the
provider's page; the provider sends it back to `…/payment-methods/<id>/return`, where payments
reads the outcome from the provider through its SDK."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from opentelemetry import trace
from prometheus_client import Counter

from billing_runtime.telemetry import start_at_zero
from portal import web
from portal.accounts import Session
from portal.client import ServiceRefused
from portal.labels import describe, expiry

router = APIRouter(include_in_schema=False)
tracer = trace.get_tracer(__name__)
METHOD_ACTIONS = Counter("portal_payment_method_actions_total", "Payment method changes asked for in the portal, by action and outcome", ["action", "outcome"])
start_at_zero(METHOD_ACTIONS, ("add_card", "add_direct_debit", "returned", "default", "remove"), ("ok", "refused"))

KINDS = {"card": "card", "direct_debit": "direct_debit"}
PROVIDER_NAMES = {"stripe": "Stripe", "gocardless": "GoCardless"}
SCHEMES = {"EUR": "SEPA", "GBP": "Bacs", "SEK": "Autogiro", "DKK": "Betalingsservice", "AUD": "BECS", "NZD": "BECS NZ", "USD": "ACH"}


def _base(who: Session) -> str:
    return f"/v1/accounts/{who.user.account_id}/payment-methods"


async def _list(request: Request, who: Session) -> list[dict[str, Any]]:
    listed = await web._services(request).json("payments", _base(who), who.key)
    return list(listed["items"])


@router.get("/p/{partner}/payment-methods")
async def payment_methods(request: Request, partner: str) -> Response:
    who = await web._signed_in_customer(request, partner)
    brand = await web._load_brand(request, who)
    methods = await _list(request, who)
    flash = {k: request.query_params.get(k) for k in ("added", "removed", "default", "pending", "failed", "cancelled")}
    return web.render(
        request,
        partner,
        "payment_methods.html",
        who=who,
        brand=brand,
        methods=methods,
        describe=describe,
        expiry=expiry,
        providers=PROVIDER_NAMES,
        request_id=str(uuid.uuid4()),
        flash=flash,
    )


@router.post("/p/{partner}/payment-methods")
async def add_payment_method(request: Request, partner: str) -> Response:
    """Start a setup at the provider and send the browser there."""
    who, form = await web._customer_change(request, partner)
    kind = KINDS.get(form.get("kind", ""))
    request_id = form.get("request_id", "")
    if kind is None or not web._ID.match(request_id) or len(request_id) > 64:
        raise web.PageError("not found", code="not_found", status_code=404)
    method_id = f"portal-{request_id}"
    services, settings = web._services(request), web._settings(request)
    public = settings.public_base_url.rstrip("/")
    profile = await services.json("usage-ingest", f"/v1/accounts/{who.user.account_id}/billing-profile", who.key)
    body = {
        "id": method_id,
        "type": kind,
        "email": profile.get("billing_email") or who.user.email,
        "name": profile.get("name"),
        "currency": profile.get("currency") or "EUR",
        "redirect_uri": f"{public}/p/{partner}/payment-methods/{method_id}/return",
        "cancel_uri": f"{public}/p/{partner}/payment-methods?cancelled=1",
    }
    with tracer.start_as_current_span("portal.add_payment_method", attributes={"billing.method_type": kind}):
        try:
            method = await services.send("POST", "payments", _base(who), who.key, body)
        except ServiceRefused:
            METHOD_ACTIONS.labels(f"add_{kind}", "refused").inc()
            raise
    METHOD_ACTIONS.labels(f"add_{kind}", "ok").inc()
    if method["status"] != "pending" or not method.get("setup_url"):
        return RedirectResponse(f"/p/{partner}/payment-methods/{method_id}", status_code=303)
    # A page that moves on to the provider by itself (a redirect after a form post would be held
    # to the page's form-action policy, which allows only the portal).
    scheme = SCHEMES.get(body["currency"], body["currency"]) if kind == "direct_debit" else None
    return web.render(
        request,
        partner,
        "setup_redirect.html",
        who=who,
        brand=await web._load_brand(request, who),
        setup_url=method["setup_url"],
        provider=PROVIDER_NAMES.get(method["provider"], method["provider"]),
        kind=kind,
        scheme=scheme,
    )


@router.get("/p/{partner}/payment-methods/{method_id}/return")
async def returned(request: Request, partner: str, method_id: str) -> Response:
    """The provider's page sent the browser back: payments asks the provider what became of it."""
    who = await web._signed_in_customer(request, partner)
    method_id = web._check_id(method_id)
    method = await web._services(request).send("POST", "payments", f"{_base(who)}/{method_id}/confirm", who.key)
    METHOD_ACTIONS.labels("returned", "ok").inc()
    outcome = {"active": "added", "pending": "pending"}.get(method["status"], "failed")
    return RedirectResponse(f"/p/{partner}/payment-methods?{outcome}={method_id}", status_code=303)


@router.get("/p/{partner}/payment-methods/{method_id}")
async def payment_method(request: Request, partner: str, method_id: str) -> Response:
    who = await web._signed_in_customer(request, partner)
    method = await web._services(request).json("payments", f"{_base(who)}/{web._check_id(method_id)}", who.key)
    return web.render(
        request,
        partner,
        "payment_method.html",
        who=who,
        brand=await web._load_brand(request, who),
        method=method,
        describe=describe,
        expiry=expiry,
        providers=PROVIDER_NAMES,
    )


async def _change(request: Request, partner: str, method_id: str, action: str) -> Response:
    who, _ = await web._customer_change(request, partner)
    method_id = web._check_id(method_id)
    services = web._services(request)
    try:
        if action == "default":
            await services.send("PUT", "payments", f"/v1/accounts/{who.user.account_id}/default-payment-method", who.key, {"method_id": method_id})
        else:
            await services.send("DELETE", "payments", f"{_base(who)}/{method_id}", who.key)
    except ServiceRefused:
        METHOD_ACTIONS.labels(action, "refused").inc()
        raise
    METHOD_ACTIONS.labels(action, "ok").inc()
    return RedirectResponse(f"/p/{partner}/payment-methods?{'default' if action == 'default' else 'removed'}={method_id}", status_code=303)


@router.post("/p/{partner}/payment-methods/{method_id}/default")
async def make_default(request: Request, partner: str, method_id: str) -> Response:
    return await _change(request, partner, method_id, "default")


@router.post("/p/{partner}/payment-methods/{method_id}/remove")
async def remove(request: Request, partner: str, method_id: str) -> Response:
    return await _change(request, partner, method_id, "remove")
