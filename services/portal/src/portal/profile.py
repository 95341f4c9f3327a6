"""An end customer's billing profile (`/p/<partner>/profile`): contact person and phone, billing
email, postal address and VAT id, read from and saved through usage-ingest's public API (which
owns customers) with the session's restricted key. usage-ingest saves it as the customer's next
revision and emits `CustomerUpserted`, which reaches the partner's system of record through
notify's webhooks. A refusal (problem+json with a stable code) is shown beside its field; the form
carries its CSRF token. A customer viewer sees the profile without the form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from opentelemetry import trace
from prometheus_client import Counter

from billing_runtime.telemetry import start_at_zero
from portal import web
from portal.accounts import Session
from portal.client import ServiceInvalid

router = APIRouter(include_in_schema=False)
tracer = trace.get_tracer(__name__)
PROFILE_SAVES = Counter("portal_profile_saves_total", "Billing profiles sent from the portal, by outcome", ["outcome"])
start_at_zero(PROFILE_SAVES, ("saved", "unchanged", "invalid"))

FIELDS = ("contact_name", "contact_phone", "billing_email", "address_line1", "address_line2", "postal_code", "city", "region", "vat_id")
# The services' stable codes, in words a customer can act on (the field they belong to comes
# from the problem's `field`; a code the portal does not know falls back to the generic message).
MESSAGES = {
    "invalid_email": "Enter an email address like name@example.com.",
    "invalid_phone": "Enter a phone number with digits, spaces and + ( ) . / - only.",
    "invalid_vat_id": "This is not a valid VAT number for your country. Check the digits, or leave it empty.",
    "incomplete_address": "An address needs a street and a city.",
    "validation_error": "This value is too long or not allowed.",
}
FIELD_OF = {"address_lines": "address_line1"}


def _path(who: Session) -> str:
    return f"/v1/accounts/{who.user.account_id}/billing-profile"


def _values(profile: dict[str, Any]) -> dict[str, str]:
    lines = list(profile.get("address_lines") or []) + ["", ""]
    values = {k: profile.get(k) or "" for k in FIELDS if not k.startswith("address_line")}
    return {**values, "address_line1": lines[0], "address_line2": lines[1]}


def _page(
    request: Request,
    partner: str,
    who: Session,
    brand: Any,
    profile: dict[str, Any],
    values: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    saved: str | None = None,
    status: int = 200,
) -> Response:
    return web.render(request, partner, "profile.html", status=status, who=who, brand=brand, profile=profile, values=values, errors=errors or {}, saved=saved)


@router.get("/p/{partner}/profile")
async def billing_profile(request: Request, partner: str) -> Response:
    who = await web._signed_in_customer(request, partner)
    brand = await web._load_brand(request, who)
    profile = await web._services(request).json("usage-ingest", _path(who), who.key)
    return _page(request, partner, who, brand, profile, _values(profile), saved=request.query_params.get("saved"))


@router.post("/p/{partner}/profile")
async def save_billing_profile(request: Request, partner: str) -> Response:
    who, form = await web._customer_change(request, partner)
    values = {k: form.get(k, "").strip() for k in FIELDS}
    body = {
        "billing_email": values["billing_email"],
        "contact_name": values["contact_name"] or None,
        "contact_phone": values["contact_phone"] or None,
        "address_lines": [line for line in (values["address_line1"], values["address_line2"]) if line],
        "city": values["city"] or None,
        "postal_code": values["postal_code"] or None,
        "region": values["region"] or None,
        "vat_id": values["vat_id"] or None,
    }
    services = web._services(request)
    with tracer.start_as_current_span("portal.save_billing_profile"):
        try:
            saved = await services.send("PUT", "usage-ingest", _path(who), who.key, body)
        except ServiceInvalid as refused:
            PROFILE_SAVES.labels("invalid").inc()
            field = FIELD_OF.get(refused.field or "", refused.field or "")
            message = MESSAGES.get(refused.code, "This could not be saved. Check the form and send it again.")
            brand = await web._load_brand(request, who)
            profile = await services.json("usage-ingest", _path(who), who.key)
            errors = {field if field in FIELDS else "form": message}
            return _page(request, partner, who, brand, profile, values, errors=errors, status=422)
    PROFILE_SAVES.labels("saved" if saved.get("changed") else "unchanged").inc()
    return RedirectResponse(f"/p/{partner}/profile?saved={'1' if saved.get('changed') else '0'}", status_code=303)
