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
from invoicing.config import Settings
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


async def report_links(runtime: ServiceRuntime[Settings], session: AsyncSession, seller_id: str, report_id: str) -> list[DocumentLink]:
    """The report as JSON (API only) and as a spreadsheet, which also has a shared link."""
    xlsx = await share(session, seller_id, "comparison_report", report_id, "xlsx", runtime.clock.now())
    return [
        DocumentLink(kind="json", url=f"/v1/comparison-reports/{report_id}"),
        DocumentLink(kind="xlsx", url=f"/v1/comparison-reports/{report_id}/xlsx", shared_url=shared_url(runtime, xlsx)),
    ]


async def create_report(runtime: ServiceRuntime[Settings], session: AsyncSession, invoice: Any) -> str:
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
            invoice_number=invoice.number,
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
        "invoice_number": row.invoice_number,
        "previous_invoice_id": row.previous_invoice_id,
        "previous_invoice_number": row.previous_invoice_number,
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
        "currency": c,
        "this_period_total": money_str(row.this_period_total, c),
        "last_period_total": money_str(row.last_period_total, c),
        "difference": money_str(row.this_period_total - row.last_period_total, c),
        "rows": row.rows,
    }


HEADERS = (
    "End customer",
    "Product",
    "Description",
    "Last qty",
    "Last amount",
    "This qty",
    "This amount",
    "Qty difference",
    "Amount difference",
    "Change",
)
_SUMMARY_HEADERS = ("End customer", "Products", "Last amount", "This amount", "Amount difference", "Added", "Removed", "Changed")


def _sheet_name(name: str, taken: set[str]) -> str:
    """An Excel sheet name: at most 31 characters, none of []:*?/\\, unique in the workbook."""
    base = "".join("_" if c in "[]:*?/\\" else c for c in name).strip("'") or "Customer"
    candidate, n = base[:31], 2
    while candidate.lower() in taken:
        suffix = f" ({n})"
        candidate, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


def report_xlsx(row: Any) -> bytes:
    """The report as a spreadsheet (seed 001): a summary sheet (one row per end customer, the
    partner's own environment first) and a sheet per end customer, each row with last and this
    period's quantity and amount; differences and totals are formulas, so a partner who corrects a
    figure sees them follow. Each sheet names both invoices by number, its header row is frozen and
    filterable. Amounts are written as numbers with the currency's digits (an exact decimal string
    in the JSON report)."""
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    # Dated by the report, not by the download: the same report is the same file, byte for byte.
    book.set_properties({"created": row.created_at, "title": f"Invoice comparison {row.period_start:%B %Y}"})
    digits = Decimal(money_str(Decimal(0), row.currency)).as_tuple().exponent
    amount_format = "#,##0" + ("." + "0" * -int(digits) if int(digits) < 0 else "")
    bold = book.add_format({"bold": True})
    title = book.add_format({"bold": True, "font_size": 13})
    header = book.add_format({"bold": True, "bg_color": "#1F4E79", "font_color": "#FFFFFF", "border": 1})
    money = book.add_format({"num_format": amount_format})
    money_bold = book.add_format({"num_format": amount_format, "bold": True, "top": 1})
    quantity = book.add_format({"num_format": "0.####"})
    total_label = book.add_format({"bold": True, "top": 1})
    invoice_number = getattr(row, "invoice_number", None) or row.invoice_id
    previous_number = getattr(row, "previous_invoice_number", None) or row.previous_invoice_id or "none"

    def heading(sheet: Any, subtitle: str) -> None:
        sheet.write_string(0, 0, f"Invoice comparison {row.period_start:%B %Y}: {subtitle}", title)
        sheet.write_row(1, 0, ["This invoice", invoice_number, "Previous invoice", previous_number, "Currency", row.currency], bold)

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in row.rows:
        groups[entry["end_customer_name"] or entry.get("end_customer_id") or ""].append(entry)

    summary = book.add_worksheet("Summary")
    heading(summary, "summary")
    first = 3  # the header row (0-based); data starts below it
    summary.write_row(first, 0, _SUMMARY_HEADERS, header)
    taken = {"summary"}
    for index, (customer, entries) in enumerate(groups.items()):
        sheet = book.add_worksheet(_sheet_name(customer, taken))
        heading(sheet, customer)
        sheet.write_row(first, 0, HEADERS, header)
        for r, entry in enumerate(entries, start=first + 1):
            n = r + 1  # the row's number as Excel shows it
            sheet.write_string(r, 0, entry["end_customer_name"] or "")
            sheet.write_string(r, 1, entry["product_code"])
            sheet.write_string(r, 2, entry["description"] or "")
            for col, key, fmt in ((3, "last_quantity", quantity), (4, "last_amount", money), (5, "this_quantity", quantity), (6, "this_amount", money)):
                sheet.write_number(r, col, float(Decimal(entry[key])), fmt)
            sheet.write_formula(r, 7, f"=F{n}-D{n}", quantity, float(Decimal(entry["quantity_difference"])))
            sheet.write_formula(r, 8, f"=G{n}-E{n}", money, float(Decimal(entry["amount_difference"])))
            sheet.write_string(r, 9, entry["change"])
        last = first + len(entries)  # 0-based index of the last data row
        total = last + 1
        sheet.write_string(total, 0, "Total", total_label)
        for col in (4, 6, 8):
            letter = "ABCDEFGHIJ"[col]
            value = sum((Decimal(e[COLUMNS[col]]) for e in entries), Decimal(0))
            sheet.write_formula(total, col, f"=SUBTOTAL(9,{letter}{first + 2}:{letter}{last + 1})", money_bold, float(value))
        sheet.freeze_panes(first + 1, 0)
        sheet.autofilter(first, 0, last, len(HEADERS) - 1)
        sheet.set_column(0, 2, 26)
        sheet.set_column(3, 9, 15)

        # The summary's row of this customer refers to the customer's sheet: one set of figures.
        r, n = first + 1 + index, first + 2 + index
        ref = "'" + sheet.get_name().replace("'", "''") + "'!"
        last_amount = sum((Decimal(e["last_amount"]) for e in entries), Decimal(0))
        this_amount = sum((Decimal(e["this_amount"]) for e in entries), Decimal(0))
        summary.write_url(r, 0, f"internal:{ref}A1", string=customer)
        summary.write_number(r, 1, len(entries))
        summary.write_formula(r, 2, f"={ref}E{total + 1}", money, float(last_amount))
        summary.write_formula(r, 3, f"={ref}G{total + 1}", money, float(this_amount))
        summary.write_formula(r, 4, f"=D{n}-C{n}", money, float(this_amount - last_amount))
        for col, change in ((5, "added"), (6, "removed"), (7, "changed")):
            summary.write_formula(r, col, f'=COUNTIF({ref}J{first + 2}:J{last + 1},"{change}")', None, sum(1 for e in entries if e["change"] == change))
    last = first + len(groups)
    total = last + 1
    summary.write_string(total, 0, "Total", total_label)
    difference = row.this_period_total - row.last_period_total
    for col, value in ((2, row.last_period_total), (3, row.this_period_total), (4, difference)):
        letter = "ABCDE"[col]
        summary.write_formula(total, col, f"=SUBTOTAL(9,{letter}{first + 2}:{letter}{max(last, first + 1) + 1})", money_bold, float(value))
    summary.freeze_panes(first + 1, 0)
    summary.autofilter(first, 0, max(last, first + 1), len(_SUMMARY_HEADERS) - 1)
    summary.set_column(0, 0, 28)
    summary.set_column(1, 7, 15)
    summary.activate()
    book.close()
    return buffer.getvalue()
