"""A partner's pages beyond its statement and customers: the margin report, the comparison reports
(with their spreadsheets), the dunning cases, the delivery log, and its brand with a live preview
and an edit form (partner admins only).

Every figure is a service's, read with the session's keys: the tenant-wide `read` key for margins
(rating), cases (dunning), deliveries and the brand (notify); the distributor key restricted to the
partner's own account there for the comparison reports (invoicing: the distributor compares the
partner's invoice with the one before). The portal holds no write key: saving the brand mints a
`write` key of the partner for that one call, announced like every key, and revokes it when the
call is done (`_brand_key`), so no key that can write outlives the request."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import account_id
from billing_runtime.auth import generate_key
from portal import accounts, db
from portal.accounts import Session
from portal.brands import Brand
from portal.client import ServiceRefused
from portal.i18n import N_
from portal.web import PageError, _check_id, _checked_form, _load_brand, _require, _services, _signed_in, _signed_in_statement, render

router = APIRouter(include_in_schema=False)
tracer = trace.get_tracer(__name__)
BRAND_EDITS = Counter("portal_brand_edits_total", "Brands saved from the portal, by outcome", ["outcome"])
WRITE_KEYS_SWEPT = Counter("portal_write_keys_swept_total", "Write keys of brand edits revoked by the sweeper, not by their own request")
# A brand edit's key lives for one call (the call waits up to PORTAL_KEY_WAIT_SECONDS for the services
# to learn it, then PORTAL_API_TIMEOUT): one still alive after this was left over.
WRITE_KEY_GRACE = timedelta(minutes=5)

_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
CASE_FILTERS = ("open", "closed", "all")
DELIVERY_FILTERS = ("all", "sent", "pending", "failed", "no_recipient")
TEMPLATE_NAMES = {
    "invoice_issued": N_("Invoice issued"),
    "comparison_report": N_("Comparison report"),
    "payment_received": N_("Payment received"),
    "payment_failed": N_("Payment failed"),
    "reminder": N_("Reminder"),
    "final_notice": N_("Final notice"),
    "suspension": N_("Suspension"),
    "reinstatement": N_("Reinstatement"),
    "portal_sign_in": N_("Portal sign-in"),
}
ACTION_NAMES = {"remind": N_("Reminder"), "retry": N_("Payment retry"), "final_notice": N_("Final notice"), "suspend": N_("Suspension")}
# The words of filters and statuses, marked here for extraction and translated where shown.
LABELS = {
    "open": N_("Open"),
    "closed": N_("Closed"),
    "all": N_("All"),
    "sent": N_("Sent"),
    "pending": N_("Pending"),
    "sending": N_("Sending"),
    "failed": N_("Failed"),
    "no_recipient": N_("No recipient"),
    "paid": N_("Paid"),
    "credited": N_("Credited"),
    "written_off": N_("Written off"),
    "added": N_("Added"),
    "removed": N_("Removed"),
    "changed": N_("Changed"),
    "unchanged": N_("Unchanged"),
}


def _partner_only(who: Session) -> None:
    _require(who.user.is_partner)


def _months_before(today: date, count: int) -> list[str]:
    months = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def _previous_month(today: date) -> str:
    return _months_before(today, 2)[1]


async def _customer_names(request: Request, who: Session) -> dict[str, str]:
    """account id → the customer's name, for the pages that list accounts by id."""
    listed = await _services(request).json("usage-ingest", "/v1/customers", who.key, {"limit": 500})
    return {c.get("account_id") or account_id(who.user.tenant, c["external_id"]): c["name"] for c in listed["items"]}


# --- margins -------------------------------------------------------------------------------------


def margin_totals(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per currency: retail, wholesale and margin summed (unrounded, as rating gives them), and the
    margin as a share of retail in percent points (one decimal)."""
    totals: dict[str, dict[str, Decimal]] = {}
    for line in lines:
        if line["margin"] is None:
            continue
        t = totals.setdefault(line["currency"], {"retail": Decimal(0), "wholesale": Decimal(0), "margin": Decimal(0)})
        for k in ("retail", "wholesale", "margin"):
            t[k] += Decimal(line[k])
    return [{"currency": c, **t, "share": share(t["margin"], t["retail"])} for c, t in sorted(totals.items())]


def share(margin: str | Decimal | None, retail: str | Decimal) -> Decimal | None:
    if margin is None or Decimal(retail) == 0:
        return None
    return (Decimal(margin) / Decimal(retail) * 100).quantize(Decimal("0.1"))


@router.get("/p/{partner}/margins")
async def margins(request: Request, partner: str) -> Response:
    """Retail − wholesale by end customer and product for one month (rating's margin report)."""
    who = await _signed_in(request, partner)
    _partner_only(who)
    today = request.app.state.runtime.clock.today()
    period = request.query_params.get("period") or _previous_month(today)
    if not _PERIOD.match(period):
        raise PageError("not a month", code="not_found", status_code=404)
    brand, report = await asyncio.gather(_load_brand(request, who), _services(request).json("rating", "/v1/margins", who.key, {"period": period}))
    lines = sorted(report["lines"], key=lambda line: (line["end_customer_name"] or line["end_customer_id"], line["product_code"]))
    for line in lines:
        line["share"] = share(line["margin"], line["retail"])
    return render(
        request, partner, "margins.html", who=who, brand=brand, period=period, periods=_months_before(today, 12), lines=lines, totals=margin_totals(lines)
    )


# --- comparison reports --------------------------------------------------------------------------


def _counts(report: dict[str, Any]) -> dict[str, int]:
    counts = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    for row in report["rows"]:
        counts[row["change"]] = counts.get(row["change"], 0) + 1
    return counts


@router.get("/p/{partner}/reports")
async def reports(request: Request, partner: str) -> Response:
    """The distributor's comparison reports on the partner's invoices (seed 001), newest first."""
    who, key = await _signed_in_statement(request, partner)
    brand, listed = await asyncio.gather(_load_brand(request, who), _services(request).json("invoicing", "/v1/comparison-reports", key))
    items = [{**r, "counts": _counts(r)} for r in listed["items"]]
    return render(request, partner, "reports.html", who=who, brand=brand, reports=items)


@router.get("/p/{partner}/reports/{report_id}")
async def report_page(request: Request, partner: str, report_id: str) -> Response:
    who, key = await _signed_in_statement(request, partner)
    brand, report = await asyncio.gather(_load_brand(request, who), _services(request).json("invoicing", f"/v1/comparison-reports/{_check_id(report_id)}", key))
    return render(request, partner, "report.html", who=who, brand=brand, report=report, counts=_counts(report), labels=LABELS)


@router.get("/p/{partner}/reports/{report_id}/xlsx")
async def report_xlsx(request: Request, partner: str, report_id: str) -> Response:
    """The report's spreadsheet, byte for byte as invoicing makes it."""
    _, key = await _signed_in_statement(request, partner)
    r = await _services(request).request("invoicing", f"/v1/comparison-reports/{_check_id(report_id)}/xlsx", key)
    headers = {
        "Content-Disposition": r.headers.get("content-disposition", f'attachment; filename="comparison-{report_id}.xlsx"'),
        "Cache-Control": "private, no-store",
    }
    return Response(r.content, media_type=r.headers.get("content-type", "application/octet-stream"), headers=headers)


# --- dunning cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listing:
    """A partner's list page of one service's items, filtered by their status (`all`: every one)."""

    service: str
    path: str
    limit: int
    filters: tuple[str, ...]  # the first one is the page's default
    template: str
    items: str  # the name the template knows the items by


CASES = _Listing("dunning", "/v1/cases", 500, CASE_FILTERS, "dunning.html", "cases")
DELIVERIES = _Listing("notify", "/v1/deliveries", 200, DELIVERY_FILTERS, "deliveries.html", "deliveries")


async def _filtered_list(request: Request, partner: str, listing: _Listing, **names: Any) -> Response:
    """The listing's page for the partner (its `status` query parameter picks the filter), with
    the brand and the customers' names; `names` are the template's words for codes."""
    who = await _signed_in(request, partner)
    _partner_only(who)
    shown = request.query_params.get("status") or listing.filters[0]
    if shown not in listing.filters:
        raise PageError("no such filter", code="not_found", status_code=404)
    params: dict[str, Any] = {"limit": listing.limit} | ({} if shown == "all" else {"status": shown})
    brand, listed, customer_names = await asyncio.gather(
        _load_brand(request, who), _services(request).json(listing.service, listing.path, who.key, params), _customer_names(request, who)
    )
    return render(
        request,
        partner,
        listing.template,
        who=who,
        brand=brand,
        names=customer_names,
        shown=shown,
        filters=listing.filters,
        labels=LABELS,
        **{listing.items: listed["items"]},
        **names,
    )


@router.get("/p/{partner}/dunning")
async def dunning_cases(request: Request, partner: str) -> Response:
    """The partner's overdue cases with its customers (dunning), open ones first by default."""
    return await _filtered_list(request, partner, CASES, action_names=ACTION_NAMES)


# --- the delivery log ----------------------------------------------------------------------------


@router.get("/p/{partner}/deliveries")
async def deliveries(request: Request, partner: str) -> Response:
    """Every email sent in the partner's name, newest first (notify's delivery log)."""
    return await _filtered_list(request, partner, DELIVERIES, template_names=TEMPLATE_NAMES)


@router.get("/p/{partner}/deliveries/{delivery_id}")
async def delivery_page(request: Request, partner: str, delivery_id: str) -> Response:
    """One email as it was sent (a sign-in email without its link: notify leaves it out)."""
    who = await _signed_in(request, partner)
    _partner_only(who)
    brand, delivery = await asyncio.gather(_load_brand(request, who), _services(request).json("notify", f"/v1/deliveries/{_check_id(delivery_id)}", who.key))
    return render(request, partner, "delivery.html", who=who, brand=brand, delivery=delivery, template_names=TEMPLATE_NAMES, labels=LABELS)


# --- the brand -----------------------------------------------------------------------------------

BRAND_FIELDS = ("sender_name", "sender_email", "logo_url", "primary_color", "footer")


def _brand_form(brand: dict[str, Any]) -> dict[str, str]:
    return {f: brand.get(f) or "" for f in BRAND_FIELDS}


@router.get("/p/{partner}/brand")
async def brand_page(request: Request, partner: str) -> Response:
    """The brand on every page and email, a live preview, and (partner admins) the form to change it."""
    who = await _signed_in(request, partner)
    _partner_only(who)
    current = await _services(request).json("notify", "/v1/brand", who.key)
    brand = Brand.from_notify(current)
    await request.app.state.brands.remember(who.user.tenant, brand)
    return render(
        request,
        partner,
        "brand.html",
        who=who,
        brand=brand,
        form=_brand_form(current),
        configured=current["configured"],
        saved=request.query_params.get("saved") == "1",
        error=None,
        error_field=None,
        idempotency_key=str(uuid.uuid4()),
    )


async def _revoke(runtime: Any, session: AsyncSession, key_id: str, reason: str) -> None:
    """Revoke a minted write key: registry row, ApiKeyRevoked through the outbox, the ledger row."""
    now = runtime.clock.now()
    await accounts.revoke_key(runtime, session, key_id, reason, now)
    await session.execute(update(db.write_key).where(db.write_key.c.key_id == key_id, db.write_key.c.revoked_at.is_(None)).values(revoked_at=now))


@contextlib.asynccontextmanager
async def _brand_key(request: Request, who: Session) -> AsyncIterator[str]:
    """A `write` key of the partner for one call to notify, revoked when the call is done (and by
    `sweep_write_keys` should this request die first)."""
    runtime = request.app.state.runtime
    key = generate_key(who.user.tenant, "write")
    label = f"portal brand edit by {who.user.email}"
    async with runtime.transaction(own=True) as session:
        await accounts.register_key(runtime, session, key, label, runtime.clock.now())
        await session.execute(insert(db.write_key).values(key_id=key.key_id, tenant=key.tenant, issued_at=runtime.clock.now()))
    try:
        yield key.key
    finally:
        async with runtime.transaction(own=True) as session:
            await _revoke(runtime, session, key.key_id, "portal brand edit done")


async def sweep_write_keys(runtime: Any, session: AsyncSession) -> int:
    """Revoke the write keys whose request did not (it died between minting and revoking): an
    operator should find out why (`PortalWriteKeyLeftOver`). How many were revoked."""
    stale = runtime.clock.now() - WRITE_KEY_GRACE
    rows = (
        await session.execute(
            select(db.write_key.c.key_id).where(db.write_key.c.revoked_at.is_(None), db.write_key.c.issued_at < stale).with_for_update(skip_locked=True)
        )
    ).all()
    for row in rows:
        await _revoke(runtime, session, row.key_id, "portal brand edit key left over")
    if rows:
        WRITE_KEYS_SWEPT.inc(len(rows))
    return len(rows)


@router.post("/p/{partner}/brand")
async def save_brand(request: Request, partner: str) -> Response:
    who = await _signed_in(request, partner)
    _require(who.user.is_admin)
    form = await _checked_form(request, partner, who)
    body: dict[str, Any] = {f: (form.get(f) or "").strip() or None for f in BRAND_FIELDS}
    body["primary_color"] = body["primary_color"] or "#1F4E79"
    idempotency = form.get("idempotency_key") or str(uuid.uuid4())
    with tracer.start_as_current_span("portal.save_brand", attributes={"billing.tenant": who.user.tenant}):
        try:
            async with _brand_key(request, who) as key:
                saved = await _services(request).json(
                    "notify", "/v1/brand", key, method="PUT", json=body, headers={"Idempotency-Key": f"portal-brand-{idempotency}"}
                )
        except ServiceRefused as refused:
            if refused.status_code != 422:
                raise
            BRAND_EDITS.labels("refused").inc()
            current = await _services(request).json("notify", "/v1/brand", who.key)
            return render(
                request,
                partner,
                "brand.html",
                status=422,
                who=who,
                brand=Brand.from_notify(current),
                form={f: form.get(f, "") for f in BRAND_FIELDS},
                configured=current["configured"],
                saved=False,
                error=N_("Check the highlighted field."),
                error_field=refused.field,
                idempotency_key=str(uuid.uuid4()),
            )
    BRAND_EDITS.labels("saved").inc()
    await request.app.state.brands.remember(who.user.tenant, Brand.from_notify(saved))
    return RedirectResponse(f"/p/{partner}/brand?saved=1", status_code=303)
