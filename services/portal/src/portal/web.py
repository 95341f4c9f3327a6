"""The pages, at `/p/<partner>/…`, in the partner's brand. Every figure comes from a service's API,
called with the signed-in session's own keys (`accounts.Session`): a customer's key is restricted
to its account by the services themselves, so a page that asked for the wrong id gets a 404."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from billing_events import account_id
from billing_runtime.auth import TENANT_PATTERN
from billing_runtime.errors import BillingError
from portal import accounts, hosts
from portal.accounts import Session
from portal.brands import Brand
from portal.client import ServiceRefused, Services
from portal.config import Settings
from portal.i18n import N_, Formatter, formatter_for
from portal.labels import describe

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "portal_session"
PRE_COOKIE = "portal_pre"  # before signing in: what the sign-in forms' CSRF tokens are bound to
ROLE_NAMES = {
    "partner_admin": N_("Partner admin"),
    "partner_finance": N_("Partner finance"),
    "customer_admin": N_("Customer admin"),
    "customer_viewer": N_("Customer viewer"),
}
LINK_REFUSED = N_("This sign-in link has expired or was already used. Ask for a new one below.")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")

templates = Environment(loader=PackageLoader("portal", "templates"), autoescape=select_autoescape(["html"]), undefined=StrictUndefined)


class PageError(BillingError):
    """Shown as a page (not problem+json): 403, 404, 410."""


def _state(request: Request) -> Any:
    return request.app.state


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _partner(partner: str) -> str:
    if not TENANT_PATTERN.match(partner):
        raise PageError("no such portal", code="portal_not_found", status_code=404)
    return partner


def _brand(request: Request, partner: str) -> Brand:
    brand: Brand = _state(request).brands.get(partner)
    return brand


async def _load_brand(request: Request, who: Session) -> Brand:
    try:
        b = await _services(request).json("notify", "/v1/brand", who.key)
    except BillingError:
        return _brand(request, who.user.tenant)
    brand = Brand.from_notify(b)
    await _state(request).brands.remember(who.user.tenant, brand)  # the sign-in pages show it before anyone signs in
    return brand


def _fmt(request: Request, who: Session | None = None) -> Formatter:
    """The user's own locale, else the browser's (Accept-Language), else PORTAL_LOCALE."""
    return formatter_for(who.user.locale if who else None, request.headers.get("accept-language"), _settings(request).locale)


def render(
    request: Request, partner: str, template: str, *, status: int = 200, who: Session | None = None, brand: Brand | None = None, **context: Any
) -> HTMLResponse:
    fmt = _fmt(request, who)
    html = templates.get_template(template).render(
        partner=partner,
        brand=brand or _brand(request, partner),
        who=who,
        role_names=ROLE_NAMES,
        fmt=fmt,
        _=fmt.gettext,
        csrf=context.pop("csrf", who.csrf if who else None),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' https: http:; style-src 'self' 'unsafe-inline'; script-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _cookie(response: Response, request: Request, partner: str, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=hosts.cookie_path(request, partner), httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


async def _who(request: Request, partner: str) -> Session | None:
    runtime = request.app.state.runtime
    async with runtime.sessions() as session:
        return await accounts.current(
            session, partner, request.cookies.get(SESSION_COOKIE), request.app.state.secrets, runtime.clock.now(), host=hosts.request_host(request)
        )


def _sign_in_page(request: Request, partner: str, *, status: int = 200, message: str | None = None, sent: bool = False) -> HTMLResponse:
    pre = request.cookies.get(PRE_COOKIE) or request.app.state.new_token()
    response = render(request, partner, "sign_in.html", status=status, csrf=request.app.state.secrets.csrf(pre), message=message, sent=sent)
    _cookie(response, request, partner, PRE_COOKIE, pre, 3600)
    return response


async def _signed_in(request: Request, partner: str) -> Session:
    who = await _who(request, _partner(partner))
    if who is None:
        raise PageError("sign in first", code="not_signed_in", status_code=401)
    return who


def _require(ok: bool) -> None:
    # The services would refuse these keys anyway; this keeps the page from pretending otherwise.
    if not ok:
        raise PageError("this page is not for your role", code="not_for_role", status_code=403)


async def _signed_in_customer(request: Request, partner: str) -> Session:
    """The session of a customer's contact (one billing account): the pages of its own account."""
    who = await _signed_in(request, partner)
    _require(not who.user.is_partner and who.user.account_id is not None)
    return who


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise PageError("not found", code="not_found", status_code=404)
    return value


class FormExpired(Exception):
    """A posted form whose CSRF token is not the session's (before signing in: the pre-cookie's);
    answered by `refuse_expired_form`, in the brand and with the user's header, not as a PageError."""

    def __init__(self, partner: str, who: Session | None) -> None:
        super().__init__("form expired")
        self.partner = partner
        self.who = who


async def _checked_form(request: Request, partner: str, who: Session | None) -> dict[str, str]:
    """The posted form, once its CSRF token is the one this session's (or pre-cookie's) pages gave."""
    body = (await request.body()).decode("utf-8", errors="replace")
    form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    cookie = who.token if who is not None else request.cookies.get(PRE_COOKIE)
    if not request.app.state.secrets.csrf_ok(cookie, form.get("csrf_token")):
        raise FormExpired(partner, who)
    return form


def refuse_expired_form(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, FormExpired)
    return render(
        request, exc.partner, "error.html", status=403, who=exc.who, title=N_("This form has expired"), detail=N_("Reload the page and send it again.")
    )


async def _customer_change(request: Request, partner: str) -> tuple[Session, dict[str, str]]:
    """A customer admin's session and the form it posted to change its own account (payment
    methods, billing profile); a viewer is refused."""
    who = await _signed_in_customer(request, partner)
    form = await _checked_form(request, partner, who)
    _require(who.user.may_change_account)
    return who, form


# --- signing in -------------------------------------------------------------------------------


@router.get("/")
async def home() -> HTMLResponse:
    return HTMLResponse("<!DOCTYPE html><title>Billing portal</title><p>Open the portal link your provider gave you.</p>")


@router.get("/p/{partner}/")
async def index(request: Request, partner: str) -> Response:
    who = await _who(request, _partner(partner))
    if who is None:
        return _sign_in_page(request, partner)
    return RedirectResponse(f"/p/{partner}/statement" if who.user.is_partner else f"/p/{partner}/account", status_code=303)


@router.post("/p/{partner}/sign-in")
async def request_link(request: Request, partner: str) -> Response:
    """Another link by email. The answer is the same whether the address is known or not."""
    form = await _checked_form(request, _partner(partner), None)
    runtime, settings = request.app.state.runtime, _settings(request)
    async with runtime.transaction() as session:
        user = await accounts.user_by_email(session, partner, form.get("email", ""))
        if user is not None:
            await accounts.send_link(runtime, session, user, portal_url=await hosts.portal_url(request, partner), link_minutes=settings.link_minutes)
    return _sign_in_page(request, partner, sent=True)


@router.get("/p/{partner}/sign-in/{token}")
async def confirm_page(request: Request, partner: str, token: str) -> Response:
    """The page the emailed link opens. Nothing is used up by opening it (mail scanners open
    links): the button posts the form that signs in."""
    runtime = request.app.state.runtime
    async with runtime.sessions() as session:
        user = await accounts.link_user(session, _partner(partner), token, runtime.clock.now())
    if user is None:
        return _sign_in_page(request, partner, status=410, message=LINK_REFUSED)
    pre = request.cookies.get(PRE_COOKIE) or request.app.state.new_token()
    response = render(request, partner, "confirm.html", csrf=request.app.state.secrets.csrf(pre), user=user, token=token)
    response.headers["Referrer-Policy"] = "no-referrer"
    _cookie(response, request, partner, PRE_COOKIE, pre, 3600)
    return response


@router.post("/p/{partner}/sign-in/{token}")
async def sign_in(request: Request, partner: str, token: str) -> Response:
    await _checked_form(request, _partner(partner), None)
    runtime, settings = request.app.state.runtime, _settings(request)
    try:
        async with runtime.transaction() as session:
            who = await accounts.sign_in(
                runtime,
                session,
                partner,
                token,
                request.app.state.secrets,
                distributor=settings.distributor_tenant,
                session_hours=settings.session_hours,
                host=hosts.request_host(request),
            )
    except accounts.LinkRefused:
        return _sign_in_page(request, partner, status=410, message=LINK_REFUSED)
    response = RedirectResponse(f"/p/{partner}/", status_code=303)
    _cookie(response, request, partner, SESSION_COOKIE, who.token, settings.session_hours * 3600)
    response.delete_cookie(PRE_COOKIE, path=hosts.cookie_path(request, partner))
    return response


@router.post("/p/{partner}/sign-out")
async def sign_out(request: Request, partner: str) -> Response:
    who = await _signed_in(request, partner)
    await _checked_form(request, partner, who)
    runtime = request.app.state.runtime
    async with runtime.transaction() as session:
        await accounts.end_sessions(runtime, session, token=who.token, why="signed out")
    response = RedirectResponse(f"/p/{partner}/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=hosts.cookie_path(request, partner))
    return response


# --- an end customer's pages (a partner's staff may open them for any of its customers) -------------


def _period_label(today: date) -> str:
    return f"{today.year:04d}-{today.month:02d}"


@router.get("/p/{partner}/account")
async def account_summary(request: Request, partner: str) -> Response:
    who = await _signed_in(request, partner)
    _require(not who.user.is_partner)
    services, acct = _services(request), who.user.account_id or ""
    brand, standing, charges, invoices, subscriptions, methods = await asyncio.gather(
        _load_brand(request, who),
        services.json("dunning", f"/v1/accounts/{acct}/standing", who.key),
        _charges(services, acct, who.key),
        services.json("invoicing", "/v1/invoices", who.key, {"limit": 100}),
        services.json("rating", f"/v1/accounts/{acct}/subscriptions", who.key),
        services.json("payments", f"/v1/accounts/{acct}/payment-methods", who.key),
    )
    items = invoices["items"]
    active = [m for m in methods["items"] if m["status"] == "active" and m["type"] != "bank_transfer"]
    method = next((m for m in active if m["is_default"]), active[-1] if active else None)  # what collection uses
    return render(
        request,
        partner,
        "account.html",
        who=who,
        brand=brand,
        standing=standing,
        charges=charges,
        invoices=items[:3],
        buyer_name=items[0]["buyer_name"] if items else who.user.name or who.user.email,
        subscriptions=[s for s in subscriptions["items"] if s["status"] != "ended"],
        method=method,
        describe_method=describe,
    )


async def _charges(services: Services, acct: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(await services.json("rating", f"/v1/accounts/{acct}/charges", key))
    except ServiceRefused as refused:
        if refused.status_code == 404:  # an account rating has no subscription of yet
            return None
        raise


async def _history(services: Services, key: str) -> list[dict[str, Any]]:
    """Every invoice, and the credit notes of those credited, newest first."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = await services.json("invoicing", "/v1/invoices", key, params)
        items.extend({**i, "kind": "invoice"} for i in page["items"])
        if not page.get("next_cursor"):
            break
        params = {"limit": 100, "cursor": page["next_cursor"]}
    credited = [i for i in items if Decimal(i["credited_total"] or "0") != 0]
    notes = await asyncio.gather(*(services.json("invoicing", f"/v1/invoices/{i['id']}/credit-notes", key) for i in credited))
    rows: list[dict[str, Any]] = []
    for invoice in items:
        rows.append(invoice)
        for found, batch in zip(credited, notes, strict=True):
            if found["id"] == invoice["id"]:
                rows.extend(
                    {
                        "kind": "credit_note",
                        "id": n["id"],
                        "number": n["number"],
                        "description": n.get("reason") or "Credit note",
                        "period_start": invoice["period_start"],
                        "period_end": invoice["period_end"],
                        "issued_on": n["issued_on"],
                        "due_on": None,
                        "paid_on": None,
                        "status": "credited",
                        "currency": n["currency"],
                        "net_total": n["net_total"],
                        "tax_total": n["tax_total"],
                        "total": n["total"],
                        "buyer_name": invoice["buyer_name"],
                    }
                    for n in batch["items"]
                )
    return rows


@router.get("/p/{partner}/invoices")
async def billing_history(request: Request, partner: str) -> Response:
    who = await _signed_in(request, partner)
    services = _services(request)
    brand, rows, received = await asyncio.gather(
        _load_brand(request, who),
        _history(services, who.key),
        _payments_received(services, who.key) if not who.user.is_partner else asyncio.sleep(0, None),
    )
    return _history_page(
        request, partner, who, brand, rows, title="Billing history", base=f"/p/{partner}/invoices", notes_base=f"/p/{partner}/credit-notes", payments=received
    )


def _history_page(
    request: Request,
    partner: str,
    who: Session,
    brand: Brand,
    rows: list[dict[str, Any]],
    *,
    title: str,
    base: str,
    notes_base: str,
    payments: list[dict[str, Any]] | None = None,
) -> Response:
    """The invoices page: a customer's billing history or a partner's account statement (the
    customer's payments below it; None: no such list)."""
    return render(request, partner, "invoices.html", who=who, brand=brand, rows=rows, title=title, base=base, notes_base=notes_base, payments=payments)


async def _payments_received(services: Services, key: str) -> list[dict[str, Any]]:
    """The customer's payments (its key sees its own only), newest first."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = await services.json("payments", "/v1/payments", key, params)
        items.extend(page["items"])
        if not page.get("next_cursor"):
            return sorted(items, key=lambda p: (p["received_on"], p["payment_id"]), reverse=True)
        params = {"limit": 500, "cursor": page["next_cursor"]}


@router.get("/p/{partner}/invoices/{invoice_id}")
async def invoice_page(request: Request, partner: str, invoice_id: str) -> Response:
    who = await _signed_in(request, partner)
    return await _invoice(request, partner, who, who.key, _check_id(invoice_id), f"/p/{partner}/invoices", "Billing history")


async def _invoice(request: Request, partner: str, who: Session, key: str, invoice_id: str, base: str, back: str) -> Response:
    brand, invoice = await asyncio.gather(_load_brand(request, who), _services(request).json("invoicing", f"/v1/invoices/{invoice_id}", key))
    return render(request, partner, "invoice.html", who=who, brand=brand, invoice=invoice, base=base, back=back)


async def _document(request: Request, key: str, kind: str, owner_id: str, fmt: str) -> Response:
    """The service's document, byte for byte, with its file name (a PDF or the XML, else not found)."""
    if fmt not in ("pdf", "xml"):
        raise PageError("not found", code="not_found", status_code=404)
    path = f"/v1/{'invoices' if kind == 'invoice' else 'credit-notes'}/{_check_id(owner_id)}/{fmt}"
    r = await _services(request).request("invoicing", path, key)
    headers = {"Content-Disposition": r.headers.get("content-disposition", f'attachment; filename="{owner_id}.{fmt}"'), "Cache-Control": "private, no-store"}
    return Response(r.content, media_type=r.headers.get("content-type", "application/octet-stream"), headers=headers)


@router.get("/p/{partner}/invoices/{invoice_id}/{fmt}")
async def invoice_document(request: Request, partner: str, invoice_id: str, fmt: str) -> Response:
    who = await _signed_in(request, partner)
    return await _document(request, who.key, "invoice", invoice_id, fmt)


@router.get("/p/{partner}/credit-notes/{credit_note_id}/{fmt}")
async def credit_note_document(request: Request, partner: str, credit_note_id: str, fmt: str) -> Response:
    who = await _signed_in(request, partner)
    return await _document(request, who.key, "credit_note", credit_note_id, fmt)


# --- a partner's pages ---------------------------------------------------------------------------


async def _signed_in_statement(request: Request, partner: str) -> tuple[Session, str]:
    """A partner's session and its distributor key, for the statement and comparison report pages
    (403 for anyone else)."""
    who = await _signed_in(request, partner)
    _require(who.user.is_partner and who.statement_key is not None)
    return who, who.statement_key or ""


@router.get("/p/{partner}/statement")
async def statement(request: Request, partner: str) -> Response:
    """The partner's account statement from the distributor (source 003), with the session's
    distributor key, which sees the partner's own account there and nothing else."""
    who, key = await _signed_in_statement(request, partner)
    brand, rows = await asyncio.gather(_load_brand(request, who), _history(_services(request), key))
    return _history_page(
        request, partner, who, brand, rows, title="Account statement", base=f"/p/{partner}/statement", notes_base=f"/p/{partner}/statement/credit-notes"
    )


@router.get("/p/{partner}/statement/credit-notes/{credit_note_id}/{fmt}")
async def statement_credit_note(request: Request, partner: str, credit_note_id: str, fmt: str) -> Response:
    _, key = await _signed_in_statement(request, partner)
    return await _document(request, key, "credit_note", credit_note_id, fmt)


@router.get("/p/{partner}/statement/{invoice_id}")
async def statement_invoice(request: Request, partner: str, invoice_id: str) -> Response:
    who, key = await _signed_in_statement(request, partner)
    return await _invoice(request, partner, who, key, _check_id(invoice_id), f"/p/{partner}/statement", "Account statement")


@router.get("/p/{partner}/statement/{invoice_id}/{fmt}")
async def statement_document(request: Request, partner: str, invoice_id: str, fmt: str) -> Response:
    _, key = await _signed_in_statement(request, partner)
    return await _document(request, key, "invoice", invoice_id, fmt)


@router.get("/p/{partner}/customers")
async def customers(request: Request, partner: str) -> Response:
    """The partner's customers, each with its standing and this period's spend so far."""
    who = await _signed_in(request, partner)
    _require(who.user.is_partner)
    services = _services(request)
    brand, listed = await asyncio.gather(_load_brand(request, who), services.json("usage-ingest", "/v1/customers", who.key, {"limit": 200}))
    items = listed["items"]

    async def facts(c: dict[str, Any]) -> tuple[Any, Any]:
        acct = c.get("account_id") or account_id(partner, c["external_id"])
        return await asyncio.gather(services.json("dunning", f"/v1/accounts/{acct}/standing", who.key), _charges(services, acct, who.key))

    rows = [{"customer": c, "standing": s, "charges": ch} for c, (s, ch) in zip(items, await asyncio.gather(*(facts(c) for c in items)), strict=True)]
    return render(request, partner, "customers.html", who=who, brand=brand, rows=rows, period=_period_label(request.app.state.runtime.clock.today()))


@router.get("/p/{partner}/users")
async def users(request: Request, partner: str) -> Response:
    who = await _signed_in(request, partner)
    _require(who.user.is_admin)
    runtime = request.app.state.runtime
    async with runtime.sessions() as session:
        rows = await accounts.users_of(session, partner)
    return render(request, partner, "users.html", who=who, brand=await _load_brand(request, who), users=rows, invited=request.query_params.get("invited"))


@router.post("/p/{partner}/users")
async def invite_user(request: Request, partner: str) -> Response:
    who = await _signed_in(request, partner)
    _require(who.user.is_admin)
    form = await _checked_form(request, partner, who)
    runtime, settings = request.app.state.runtime, _settings(request)
    try:
        async with runtime.transaction() as session:
            user, _ = await accounts.invite(
                runtime,
                session,
                tenant=partner,
                email=form.get("email", ""),
                name=form.get("name"),
                role=form.get("role", ""),
                customer_id=form.get("customer_id"),
                invited_by=who.user.email,
                portal_url=await hosts.portal_url(request, partner),
                link_minutes=settings.link_minutes,
                locale=form.get("locale") or None,
            )
    except accounts.InvalidInvitation as bad:
        async with runtime.sessions() as session:
            rows = await accounts.users_of(session, partner)
        return render(request, partner, "users.html", status=422, who=who, brand=await _load_brand(request, who), users=rows, invited=None, error=str(bad))
    return RedirectResponse(f"/p/{partner}/users?invited={user.email}", status_code=303)
