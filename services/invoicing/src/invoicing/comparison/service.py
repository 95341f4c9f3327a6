"""The invoice comparison report (seed 001, BILLING-RULES §7): per end customer and product, last
period's and this period's quantity and amount, the differences, and which lines were added or
removed; as JSON and as a spreadsheet, announced by ComparisonReportReady for notify."""

from __future__ import annotations

import io
import uuid
from collections import defaultdict
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import xlsxwriter
from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import ChargesRated, ComparisonReportReady, DocumentLink, Money, derived_event_id
from billing_events.money import money_str, round_half_up
from billing_runtime.errors import NotFound
from billing_runtime.service import ServiceRuntime
from invoicing.comparison import repository as repo
from invoicing.config import Settings
from invoicing.documents.shares import share, shared_url
from invoicing.invoice import repository as invoice_repo

tracer = trace.get_tracer(__name__)
REPORTS = Counter(
    "billing_comparison_reports_total", "Invoice comparison reports announced, by basis (rated_charges: ahead of the invoice; invoice; revised)", ["basis"]
)
for _basis in ("rated_charges", "invoice", "revised"):
    REPORTS.labels(_basis)
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


def _summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {f"lines_{change}": sum(1 for r in rows if r["change"] == change) for change in ("added", "removed", "changed")}


async def announce(
    runtime: ServiceRuntime[Settings],
    session: AsyncSession,
    report: dict[str, Any],
    *,
    invoice_number: str | None,
    revised: bool = False,
    buyer_name: str | None = None,
) -> None:
    """ComparisonReportReady for a stored report, through the outbox (notify sends it)."""
    currency, report_id = report["currency"], report["report_id"]
    this_total, last_total = report["this_period_total"], report["last_period_total"]
    ready = ComparisonReportReady(
        report_id=report_id,
        seller_id=report["seller_id"],
        buyer_account_id=report["buyer_account_id"],
        invoice_id=report["invoice_id"],
        invoice_number=invoice_number,
        previous_invoice_id=report["previous_invoice_id"],
        period_start=report["period_start"],
        period_end=report["period_end"],
        currency=currency,
        this_period_total=Money.of(this_total, currency),
        last_period_total=Money.of(last_total, currency),
        difference=Money.of(this_total - last_total, currency),
        documents=await report_links(runtime, session, report["seller_id"], report_id),
        basis=report["basis"],
        invoice_expected_on=report.get("invoice_expected_on"),
        revised=revised,
        buyer_name=buyer_name,
        **_summary(report["rows"]),
    )
    # The report sent ahead keeps the first id; the one revised at the invoice has its own.
    event_id = derived_event_id("comparison_report_ready", report_id, *(("revised",) if revised else ()))
    await runtime.outbox.add(session, runtime.event(ready, tenant=report["seller_id"], event_id=event_id, subject=report_id))
    REPORTS.labels(report["basis"] if not revised else "revised").inc()


async def _report_row(
    session: AsyncSession, *, seller_id: str, buyer_account_id: str, invoice_id: str, period_start: Any, period_end: Any, currency: str, this_lines: list[Any]
) -> dict[str, Any]:
    """The report's content: this period's lines against the buyer's previous invoice from the seller."""
    previous = await repo.previous_invoice(session, seller_id, buyer_account_id, period_start)
    last_lines = await invoice_repo.get_lines(session, previous.invoice_id) if previous is not None else []
    return {
        "report_id": report_id_for(invoice_id),
        "seller_id": seller_id,
        "buyer_account_id": buyer_account_id,
        "invoice_id": invoice_id,
        "previous_invoice_id": previous.invoice_id if previous is not None else None,
        "period_start": period_start,
        "period_end": period_end,
        "currency": currency,
        "this_period_total": sum((li.net for li in this_lines), Decimal(0)),
        "last_period_total": sum((li.net for li in last_lines), Decimal(0)),
        "rows": compare(last_lines, this_lines, currency),
    }


async def create_report_ahead(runtime: ServiceRuntime[Settings], session: AsyncSession, charges: ChargesRated, invoice_id: str) -> str | None:
    """Seed 001's first business day: the report from the period's charges as rated so far (each
    line net rounded once, as the invoice will round it), sent before the invoice, which it names
    by the id it will have and as "to be invoiced". None when the invoice or the report exists
    already (the bill run came first, or the event is replayed)."""
    with tracer.start_as_current_span("create_comparison_report", attributes={"billing.invoice_id": invoice_id, "billing.basis": "rated_charges"}):
        report_id = report_id_for(invoice_id)
        if await repo.get(session, charges.seller_id, report_id) is not None:
            return None
        if await invoice_repo.find_for_period(session, charges.seller_id, charges.account_id, charges.period_start, charges.period_end) is not None:
            return None
        currency = charges.currency
        this_lines = [
            SimpleNamespace(
                end_customer_id=li.end_customer_id,
                end_customer_name=li.end_customer_name,
                product_code=li.product_code,
                description=li.description,
                quantity=li.quantity,
                net=round_half_up(li.amount.amount, currency),
            )
            for li in charges.lines
        ]
        report = await _report_row(
            session,
            seller_id=charges.seller_id,
            buyer_account_id=charges.account_id,
            invoice_id=invoice_id,
            period_start=charges.period_start,
            period_end=charges.period_end,
            currency=currency,
            this_lines=this_lines,
        )
        report |= {"basis": "rated_charges", "invoice_expected_on": charges.bill_run_on, "created_at": runtime.clock.now()}
        await repo.insert_report(session, report)
        await announce(runtime, session, report, invoice_number=None)
        return report_id


async def create_report(runtime: ServiceRuntime[Settings], session: AsyncSession, invoice: Any) -> str:
    """Compare a just-issued invoice with the buyer's previous one, in the issuing transaction. A
    report sent ahead of the invoice (`create_report_ahead`) is brought to the invoice's lines and
    names it; it is announced again (`revised`) only when its figures changed. Without one, the
    report is made and announced now, with the invoice (its ComparisonReportReady goes into the
    outbox before the InvoiceIssued, on the same partition)."""
    with tracer.start_as_current_span("create_comparison_report", attributes={"billing.invoice_id": invoice.invoice_id, "billing.basis": "invoice"}):
        this_lines = await invoice_repo.get_lines(session, invoice.invoice_id)
        report = await _report_row(
            session,
            seller_id=invoice.seller_id,
            buyer_account_id=invoice.buyer_account_id,
            invoice_id=invoice.invoice_id,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            currency=invoice.currency,
            this_lines=this_lines,
        )
        buyer_name = (invoice.buyer or {}).get("name")
        ahead = await repo.get(session, invoice.seller_id, report["report_id"])
        if ahead is None:
            report |= {"basis": "invoice", "invoice_expected_on": None, "created_at": runtime.clock.now()}
            await repo.insert_report(session, report)
            await announce(runtime, session, report, invoice_number=invoice.number, buyer_name=buyer_name)
            return str(report["report_id"])
        same = (ahead.rows, ahead.this_period_total, ahead.last_period_total) == (report["rows"], report["this_period_total"], report["last_period_total"])
        changes = {k: report[k] for k in ("previous_invoice_id", "this_period_total", "last_period_total", "rows")}
        await repo.update_report(session, invoice.seller_id, report["report_id"], {**changes, "basis": "invoice"})
        if not same:
            report |= {"basis": "invoice", "invoice_expected_on": ahead.invoice_expected_on}
            await announce(runtime, session, report, invoice_number=invoice.number, revised=True, buyer_name=buyer_name)
        return str(report["report_id"])


async def existing_report(session: AsyncSession, seller_id: str, report_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's report (with `buyer_account_id`: only if it is about that buyer), else 404 `comparison_report_not_found`."""
    row = await repo.get(session, seller_id, report_id, buyer_account_id=buyer_account_id)
    if row is None:
        raise NotFound(f"no comparison report {report_id!r}", code="comparison_report_not_found")
    return row


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
        # rated_charges: sent ahead of the invoice, from the period's charges as rated then
        "basis": row.basis,
        "invoice_expected_on": row.invoice_expected_on.isoformat() if row.invoice_expected_on else None,
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
    expected_on = getattr(row, "invoice_expected_on", None)
    # A report sent ahead of its invoice (seed 001) has no number to show yet.
    invoice_number = getattr(row, "invoice_number", None) or (f"to be invoiced on {expected_on:%d %B %Y}" if expected_on else "to be invoiced")
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
