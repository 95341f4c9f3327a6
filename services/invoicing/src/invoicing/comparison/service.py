"""The invoice comparison report (seed 001, BILLING-RULES §7): per end customer and product, last
period's and this period's quantity and amount, the differences, and which lines were added or
removed; as JSON and as a spreadsheet, announced by ComparisonReportReady for notify."""

from __future__ import annotations

import io
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import xlsxwriter
from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import ComparisonReportReady, DocumentLink, Money, derived_event_id
from billing_events.money import money_str
from billing_runtime.service import ServiceRuntime
from invoicing.comparison import repository as repo
from invoicing.documents.shares import share, shared_url
from invoicing.invoice import repository as invoice_repo

tracer = trace.get_tracer(__name__)
REPORTS = Counter("billing_comparison_reports_total", "Invoice comparison reports created")
_NAMESPACE = uuid.UUID("3e1d2c4b-7a6f-5e8d-9c0b-1a2f3e4d5c6b")
COLUMNS = (
    "end_customer_name",
    "product_code",
    "description",
    "last_quantity",
    "last_amount",
    "this_quantity",
    "this_amount",
    "quantity_difference",
    "amount_difference",
    "change",
)


def compare(last_lines: list[Any], this_lines: list[Any], currency: str) -> list[dict[str, Any]]:
    """One row per (end customer, product) present in either period, ordered by customer then product."""
    totals: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    names: dict[tuple[str, str], tuple[str | None, str]] = {}
    for period, lines in (("last", last_lines), ("this", this_lines)):
        for li in lines:
            key = (li.end_customer_id or "", li.product_code)
            totals[key][f"{period}_quantity"] += li.quantity
            totals[key][f"{period}_amount"] += li.net
            totals[key][f"{period}_seen"] = Decimal(1)
            names[key] = (li.end_customer_name or names.get(key, (None, ""))[0], li.description)
    rows = []
    for key in sorted(totals, key=lambda k: ((names[k][0] or k[0]) if k[0] else "", k[1])):
        t = totals[key]
        change = "added" if not t["last_seen"] else "removed" if not t["this_seen"] else "unchanged"
        if change == "unchanged" and (t["last_quantity"] != t["this_quantity"] or t["last_amount"] != t["this_amount"]):
            change = "changed"
        rows.append(
            {
                "end_customer_id": key[0] or None,
                "end_customer_name": names[key][0] if key[0] else "Own environment",
                "product_code": key[1],
                "description": names[key][1],
                "last_quantity": format(t["last_quantity"], "f"),
                "last_amount": money_str(t["last_amount"], currency),
                "this_quantity": format(t["this_quantity"], "f"),
                "this_amount": money_str(t["this_amount"], currency),
                "quantity_difference": format(t["this_quantity"] - t["last_quantity"], "f"),
                "amount_difference": money_str(t["this_amount"] - t["last_amount"], currency),
                "change": change,
            }
        )
    return rows


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def report_filename(row: Any) -> str:
    return f"comparison-{row.period_start:%Y-%m}-{row.buyer_account_id}.xlsx"


def report_id_for(invoice_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"comparison:{invoice_id}"))


async def report_links(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, report_id: str) -> list[DocumentLink]:
    """The report as JSON (API only) and as a spreadsheet, which also has a shared link."""
    xlsx = await share(session, seller_id, "comparison_report", report_id, "xlsx", runtime.clock.now())
    return [
        DocumentLink(kind="json", url=f"/v1/comparison-reports/{report_id}"),
        DocumentLink(kind="xlsx", url=f"/v1/comparison-reports/{report_id}/xlsx", shared_url=shared_url(runtime, xlsx)),
    ]


async def create_report(runtime: ServiceRuntime, session: AsyncSession, invoice: Any) -> str:
    """Compare a just-issued invoice with the buyer's previous one and announce the report, in the
    issuing transaction."""
    with tracer.start_as_current_span("create_comparison_report", attributes={"billing.invoice_id": invoice.invoice_id}):
        previous = await repo.previous_invoice(session, invoice.seller_id, invoice.buyer_account_id, invoice.period_start)
        last_lines = await invoice_repo.get_lines(session, previous.invoice_id) if previous is not None else []
        this_lines = await invoice_repo.get_lines(session, invoice.invoice_id)
        currency = invoice.currency
        rows = compare(last_lines, this_lines, currency)
        this_total = sum((li.net for li in this_lines), Decimal(0))
        last_total = sum((li.net for li in last_lines), Decimal(0))
        report_id = report_id_for(invoice.invoice_id)
        await repo.insert_report(
            session,
            {
                "report_id": report_id,
                "seller_id": invoice.seller_id,
                "buyer_account_id": invoice.buyer_account_id,
                "invoice_id": invoice.invoice_id,
                "previous_invoice_id": previous.invoice_id if previous is not None else None,
                "period_start": invoice.period_start,
                "period_end": invoice.period_end,
                "currency": currency,
                "this_period_total": this_total,
                "last_period_total": last_total,
                "rows": rows,
                "created_at": runtime.clock.now(),
            },
        )
        ready = ComparisonReportReady(
            report_id=report_id,
            seller_id=invoice.seller_id,
            buyer_account_id=invoice.buyer_account_id,
            invoice_id=invoice.invoice_id,
            previous_invoice_id=previous.invoice_id if previous is not None else None,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            currency=currency,
            this_period_total=Money.of(this_total, currency),
            last_period_total=Money.of(last_total, currency),
            difference=Money.of(this_total - last_total, currency),
            lines_added=sum(1 for r in rows if r["change"] == "added"),
            lines_removed=sum(1 for r in rows if r["change"] == "removed"),
            lines_changed=sum(1 for r in rows if r["change"] == "changed"),
            documents=await report_links(runtime, session, invoice.seller_id, report_id),
        )
        event_id = derived_event_id("comparison_report_ready", report_id)
        await runtime.outbox.add(session, runtime.event(ready, tenant=invoice.seller_id, event_id=event_id, subject=report_id))
        REPORTS.inc()
        return report_id


def report_json(row: Any) -> dict[str, Any]:
    c = row.currency
    return {
        "id": row.report_id,
        "buyer_account_id": row.buyer_account_id,
        "invoice_id": row.invoice_id,
        "previous_invoice_id": row.previous_invoice_id,
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
        "currency": c,
        "this_period_total": money_str(row.this_period_total, c),
        "last_period_total": money_str(row.last_period_total, c),
        "difference": money_str(row.this_period_total - row.last_period_total, c),
        "rows": row.rows,
    }


def report_xlsx(row: Any) -> bytes:
    """The report as a spreadsheet: numbers as numbers (exact decimals formatted to the currency's digits)."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    # Dated by the report, not by the download: the same report is the same file, byte for byte.
    book.set_properties({"created": row.created_at})
    sheet = book.add_worksheet("Comparison")
    bold = book.add_format({"bold": True})
    money = book.add_format({"num_format": "#,##0.00"})
    sheet.write_row(0, 0, [f"Invoice comparison {row.period_start:%B %Y}", row.currency], bold)
    headers = ["End customer", "Product", "Description", "Last qty", "Last amount", "This qty", "This amount", "Qty difference", "Amount difference", "Change"]
    sheet.write_row(2, 0, headers, bold)
    numeric = {"last_quantity", "last_amount", "this_quantity", "this_amount", "quantity_difference", "amount_difference"}
    for r, entry in enumerate(row.rows, start=3):
        for col, key in enumerate(COLUMNS):
            value = entry[key]
            if key in numeric:
                sheet.write_number(r, col, float(Decimal(value)), money if key.endswith("amount") or key == "amount_difference" else None)
            else:
                sheet.write_string(r, col, value or "")
    total_row = len(row.rows) + 3
    sheet.write_string(total_row, 0, "Total", bold)
    sheet.write_number(total_row, 4, float(row.last_period_total), money)
    sheet.write_number(total_row, 6, float(row.this_period_total), money)
    sheet.write_number(total_row, 8, float(row.this_period_total - row.last_period_total), money)
    sheet.set_column(0, 2, 24)
    sheet.set_column(3, 9, 14)
    book.close()
    return buffer.getvalue()
