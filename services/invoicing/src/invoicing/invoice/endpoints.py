"""Invoice HTTP: the calling seller lists and reads its own invoices."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from billing_events import PeriodClosed, RatedLine
from billing_runtime.api import Admin, ForAccount, OwnAccount, Read, Runtime, Tenant, Write, checked_limit, own_account, page_of
from billing_runtime.errors import BillingError
from invoicing.config import Settings
from invoicing.documents.shares import rotate, tokens_of
from invoicing.invoice import repository as repo
from invoicing.invoice.schemas import InvoiceDetail, InvoicePage, InvoicePreview, InvoiceSummary, SharedLinks, Status
from invoicing.invoice.service import SHARED_FORMATS, InvalidPeriodClosed, existing_invoice, invoice_links, preview_invoice
from invoicing.tax.engine import TaxError

router = APIRouter(prefix="/v1", tags=["invoices"])


class InvalidPeriod(BillingError):
    code = "invalid_period"


class InvalidCursor(BillingError):
    code = "invalid_cursor"


class PreviewIn(BaseModel):
    """What is known so far of an account's period: the rated lines as rating would close them."""

    model_config = ConfigDict(extra="forbid")

    buyer_account_id: str
    period_start: date
    period_end: date
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    tier: Literal["retail", "wholesale"] = "retail"
    lines: list[RatedLine]


class InvalidPreview(BillingError):
    code = "invalid_preview"


def month_bounds(period: str) -> tuple[date, date]:
    """A listing's `period=YYYY-MM`: its first day and the next month's first day."""
    try:
        start = date(int(period[:4]), int(period[5:7]), 1)
    except ValueError:
        raise InvalidPeriod(f"period {period!r} is not a month (YYYY-MM)", field="period") from None
    return start, date(start.year + start.month // 12, start.month % 12 + 1, 1)


def _cursor(cursor: str) -> int:
    if not cursor.isascii() or not cursor.isdigit():
        raise InvalidCursor("cursor is not one this API returned", field="cursor")
    return int(cursor)


@router.get("/invoices", dependencies=[Read, ForAccount], response_model=InvoicePage)
async def list_invoices(
    tenant: Tenant,
    runtime: Runtime[Settings],
    account: OwnAccount,
    buyer_account_id: str | None = None,
    status: Status | None = None,
    period: str | None = Query(default=None, pattern=r"^[0-9]{4}-[0-9]{2}$", description="Month the billing period starts in."),
    limit: int = Query(default=50, ge=1),
    cursor: str | None = None,
) -> InvoicePage:
    """The seller's invoices, newest number first (a key restricted to one account: that account's only)."""
    buyer_account_id = own_account(account, buyer_account_id)
    limit = checked_limit(limit, runtime.settings.max_page_size if isinstance(runtime.settings, Settings) else 200)
    period_from, period_until = month_bounds(period) if period else (None, None)
    async with runtime.sessions() as session:
        rows = await repo.list_invoices(
            session,
            tenant,
            buyer_account_id=buyer_account_id,
            status=status,
            period_from=period_from,
            period_until=period_until,
            before_seq=_cursor(cursor) if cursor else None,
            limit=limit + 1,
        )
    page, next_cursor = page_of(rows, limit, lambda r: str(r.seq))
    return InvoicePage(items=[InvoiceSummary.from_row(r) for r in page], limit=limit, next_cursor=next_cursor)


@router.get("/invoices/{invoice_id}", dependencies=[Read, ForAccount], response_model=InvoiceDetail)
async def get_invoice(invoice_id: str, tenant: Tenant, runtime: Runtime[Settings], account: OwnAccount) -> InvoiceDetail:
    async with runtime.sessions() as session:
        row = await existing_invoice(session, tenant, invoice_id, buyer_account_id=account)
        lines = await repo.get_lines(session, invoice_id)
        tokens = await tokens_of(session, tenant, "invoice", invoice_id)
    return InvoiceDetail.from_rows(row, lines, invoice_links(runtime, invoice_id, tokens))


@router.post("/invoices/{invoice_id}/shared-links/rotate", dependencies=[Admin], response_model=SharedLinks)
async def rotate_shared_links(invoice_id: str, tenant: Tenant, runtime: Runtime[Settings]) -> SharedLinks:
    """Replace the invoice's shared links (a link reached someone it should not have): the old
    ones answer 404 from now on; the new ones are returned. Emails already sent keep the old links."""
    async with runtime.transaction() as session:
        await existing_invoice(session, tenant, invoice_id)
        tokens = await rotate(session, tenant, "invoice", invoice_id, SHARED_FORMATS, runtime.clock.now())
    return SharedLinks(documents=invoice_links(runtime, invoice_id, tokens))


@router.post("/invoices/preview", dependencies=[Write], response_model=InvoicePreview)
async def post_preview(body: PreviewIn, tenant: Tenant, runtime: Runtime[Settings]) -> InvoicePreview:
    """The upcoming invoice of any account, from the lines known so far: the same figures, tax,
    dates and sections the invoice will have when the period closes with these lines."""
    closed = PeriodClosed(
        bill_run_id="preview",
        seller_id=tenant,
        buyer_account_id=body.buyer_account_id,
        period_start=body.period_start,
        period_end=body.period_end,
        currency=body.currency,
        tier=body.tier,
        lines=body.lines,
    )
    async with runtime.sessions() as session:
        try:
            return await preview_invoice(runtime, session, closed)
        except (InvalidPeriodClosed, TaxError) as exc:
            raise InvalidPreview(exc.message, code=exc.code) from exc
