"""Seed 001's invoice comparison report: September against October for a partner, JSON and XLSX."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from invoicing_testkit import period_closed, put_seller, rated
from openpyxl import load_workbook
from sqlalchemy import text

from billing_events import ChargesRated, RatedLine
from billing_runtime.clock import FixedClock
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import tenant_headers
from invoicing.comparison.consumers import on_charges_rated
from invoicing.comparison.service import report_xlsx
from invoicing.config import Settings
from invoicing.invoice.service import issue_invoice

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

SEP = (date(2026, 9, 1), date(2026, 9, 30))
OCT = (date(2026, 10, 1), date(2026, 10, 31))


def line(line_id: str, code: str, qty: str, price: str, who: str | None, period: tuple[date, date]) -> RatedLine:
    update = {"end_customer_id": f"acct-{who}", "end_customer_name": who.title()} if who else {}
    return rated(line_id, code, qty, price, start=period[0], end=period[1]).model_copy(update=update)


async def test_comparison_report_of_a_partner(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    partner = f"{tenant}-partner"
    await put_seller(client, tenant, name="Tailspin Distribution Inc.", invoice_prefix="TSD")
    september = [
        line("s1", "USR-SUP", "14", "35.00", "contoso", SEP),
        line("s2", "EML-HST", "10", "6.75", "contoso", SEP),
        line("s3", "SRV-SUP", "2", "85.00", "fabrikam", SEP),
        line("s4", "STL-LIC", "2", "47.25", None, SEP),
    ]
    october = [
        line("o1", "USR-SUP", "15", "35.00", "contoso", OCT),  # changed
        line("o2", "EML-HST", "10", "6.75", "contoso", OCT),  # unchanged
        line("o4", "STL-LIC", "2", "47.25", None, OCT),  # unchanged; fabrikam's servers removed
        line("o5", "SETUP-CORE", "8", "25.00", "woodgrove", OCT),  # added
    ]
    async with runtime.transaction() as session:
        await issue_invoice(runtime, session, period_closed(tenant, partner, september, start=SEP[0], end=SEP[1], tier="wholesale"))
    async with runtime.transaction() as session:
        october_id = await issue_invoice(runtime, session, period_closed(tenant, partner, october, start=OCT[0], end=OCT[1], tier="wholesale"))

    listed = (await client.get("/v1/comparison-reports", headers=tenant_headers(tenant), params={"buyer_account_id": partner, "period": "2026-10"})).json()[
        "items"
    ]
    [report] = listed
    assert (report["invoice_id"], report["this_period_total"], report["last_period_total"], report["difference"]) == (october_id, "887.00", "822.00", "65.00")
    keys = ("end_customer_name", "product_code", "last_quantity", "this_quantity", "amount_difference", "change")
    assert [tuple(r[k] for k in keys) for r in report["rows"]] == [
        ("Own environment", "STL-LIC", "2", "2", "0.00", "unchanged"),
        ("Contoso", "EML-HST", "10", "10", "0.00", "unchanged"),
        ("Contoso", "USR-SUP", "14", "15", "35.00", "changed"),
        ("Fabrikam", "SRV-SUP", "2", "0", "-170.00", "removed"),
        ("Woodgrove", "SETUP-CORE", "0", "8", "200.00", "added"),
    ]
    september_report = (await client.get("/v1/comparison-reports", headers=tenant_headers(tenant), params={"period": "2026-09"})).json()["items"]
    assert [(r["previous_invoice_id"], r["last_period_total"], {row["change"] for row in r["rows"]}) for r in september_report] == [(None, "0.00", {"added"})]

    r = await client.get(f"/v1/comparison-reports/{report['id']}/xlsx", headers=tenant_headers(tenant))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["Summary", "Own environment", "Contoso", "Fabrikam", "Woodgrove"]
    assert book.active is not None and book.active.title == "Summary"
    contoso = book["Contoso"]
    # Both invoices by number; the header row frozen and filterable.
    assert [contoso.cell(2, c).value for c in (1, 2, 3, 4)] == ["This invoice", "TSD-000002", "Previous invoice", "TSD-000001"]
    assert [c.value for c in contoso[4]][:3] == ["End customer", "Product", "Description"]
    assert (contoso.freeze_panes, contoso.auto_filter.ref) == ("A5", "A4:J6")
    assert [c.value for c in contoso[6]] == ["Contoso", "USR-SUP", "USR-SUP", 14, 490, 15, 525, "=F6-D6", "=G6-E6", "changed"]
    # Totals and differences are formulas (SUBTOTAL, so a filtered view totals what it shows).
    assert [contoso.cell(7, c).value for c in (1, 5, 7, 9)] == ["Total", "=SUBTOTAL(9,E5:E6)", "=SUBTOTAL(9,G5:G6)", "=SUBTOTAL(9,I5:I6)"]
    summary = book["Summary"]
    assert (summary.freeze_panes, summary.auto_filter.ref) == ("A5", "A4:H8")
    counts = [f"=COUNTIF('Contoso'!J5:J6,\"{change}\")" for change in ("added", "removed", "changed")]
    assert [c.value for c in summary[6]] == ["Contoso", 2, "='Contoso'!E7", "='Contoso'!G7", "=D6-C6", *counts]
    assert [summary.cell(9, c).value for c in (1, 3, 4, 5)] == ["Total", "=SUBTOTAL(9,C5:C8)", "=SUBTOTAL(9,D5:D8)", "=SUBTOTAL(9,E5:E8)"]
    # The values a spreadsheet shows before it recalculates are the report's own figures.
    cached = load_workbook(io.BytesIO(r.content), data_only=True)["Summary"]
    assert [Decimal(str(cached.cell(9, c).value)) for c in (3, 4, 5)] == [Decimal("822.00"), Decimal("887.00"), Decimal("65.00")]
    assert [cached.cell(r, 5).value for r in range(5, 9)] == [0, 35, -170, 200]
    assert (report["invoice_number"], report["previous_invoice_number"]) == ("TSD-000002", "TSD-000001")

    async with runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT value FROM invoicing.outbox WHERE event_type = 'billing.comparison_report.ready.v1' AND key = :k ORDER BY id"), {"k": partner.encode()}
        )
        events = [json.loads(v) for (v,) in rows]
    assert [(e["period_start"], e["lines_added"], e["lines_removed"], e["lines_changed"]) for e in events] == [("2026-09-01", 4, 0, 0), ("2026-10-01", 1, 1, 1)]
    assert events[1]["difference"] == {"amount": "65.00", "currency": "USD"}
    assert events[1]["invoice_number"] == "TSD-000002"
    async with runtime.sessions() as session:
        order = (
            (
                await session.execute(
                    text(
                        "SELECT event_type FROM invoicing.outbox WHERE key = :k"
                        " AND event_type IN ('billing.comparison_report.ready.v1', 'billing.invoice.issued.v1') ORDER BY id"
                    ),
                    {"k": partner.encode()},
                )
            )
            .scalars()
            .all()
        )
    # Seed 001: the report reaches the partner ahead of its invoice (published first on the buyer's partition).
    assert order == ["billing.comparison_report.ready.v1", "billing.invoice.issued.v1"] * 2
    assert [d["kind"] for d in events[1]["documents"]] == ["json", "xlsx"]
    # The spreadsheet's shared link opens it without a key (the JSON is for API callers only).
    json_doc, xlsx_doc = events[1]["documents"]
    assert json_doc["shared_url"] is None
    shared = await client.get(xlsx_doc["shared_url"])
    assert shared.status_code == 200 and shared.content == r.content
    assert shared.headers["content-disposition"].startswith("attachment; filename=")
    assert (await client.get(f"/v1/comparison-reports/{report['id']}", headers=tenant_headers("someone-else"))).status_code == 404


async def test_the_list_rejects_a_month_that_does_not_exist(client: httpx.AsyncClient, tenant: str) -> None:
    r = await client.get("/v1/comparison-reports", headers=tenant_headers(tenant), params={"period": "2026-13"})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (400, "invalid_period", "period")
    assert (await client.get("/v1/comparison-reports", headers=tenant_headers(tenant), params={"period": "2026-12"})).json()["items"] == []


def test_the_same_report_is_the_same_spreadsheet_whenever_it_is_downloaded() -> None:
    # Its shared link and its API download must give one file: the workbook is dated by the report.
    row = SimpleNamespace(
        period_start=date(2026, 10, 1),
        currency="USD",
        rows=[],
        this_period_total=Decimal(0),
        last_period_total=Decimal(0),
        created_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        invoice_id="inv-1",
        invoice_number="TSD-000002",
        previous_invoice_id=None,
        previous_invoice_number=None,
    )
    first = report_xlsx(row)
    time.sleep(1.1)  # the workbook's own date has one-second resolution
    assert report_xlsx(row) == first


async def _ready_events(runtime: ServiceRuntime[Settings], partner: str) -> list[tuple[str, dict[str, Any]]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT event_type, value FROM invoicing.outbox WHERE key = :k"
                " AND event_type IN ('billing.comparison_report.ready.v1', 'billing.invoice.issued.v1') ORDER BY id"
            ),
            {"k": partner.encode()},
        )
        return [(t, json.loads(v)) for t, v in rows]


async def test_the_report_goes_out_on_the_first_business_day_from_the_rated_charges_before_the_invoice(
    client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str
) -> None:
    """Seed 001: the comparison spreadsheet on the first business day after the period (rating's
    ChargesRated, Monday 2 November 2026), the invoice a week later (the bill run of the 10th). The
    report sent ahead says "to be invoiced"; once the invoice is issued the same report names it,
    and only a report whose figures changed is sent again (revised)."""
    partner, other = f"{tenant}-partner", f"{tenant}-other"
    await put_seller(client, tenant, name="Tailspin Distribution Inc.", invoice_prefix="TSD")
    september = [line("s1", "USR-SUP", "14", "35.00", "contoso", SEP), line("s4", "STL-LIC", "2", "47.25", None, SEP)]
    october = [line("o1", "USR-SUP", "15", "35.00", "contoso", OCT), line("o4", "STL-LIC", "2", "47.25", None, OCT)]
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    clock.set(datetime(2026, 10, 1, 9, tzinfo=UTC))
    async with runtime.transaction() as session:
        for buyer in (partner, other):
            await issue_invoice(runtime, session, period_closed(tenant, buyer, september, start=SEP[0], end=SEP[1], tier="wholesale"))

    clock.set(datetime(2026, 11, 2, 8, tzinfo=UTC))
    async with runtime.transaction() as session:
        for buyer in (partner, other):
            charges = ChargesRated(
                account_id=buyer,
                seller_id=tenant,
                period_start=OCT[0],
                period_end=OCT[1],
                currency="USD",
                lines=october,
                tier="wholesale",
                rated_on=date(2026, 11, 2),
                bill_run_on=date(2026, 11, 10),
            )
            event = runtime.event(charges, tenant=tenant, event_id=f"charges-{buyer}", subject=buyer)
            await on_charges_rated(runtime, session, event)
            await on_charges_rated(runtime, session, event)  # applied again (a replay): nothing more
    [ahead] = (await client.get("/v1/comparison-reports", headers=tenant_headers(tenant), params={"buyer_account_id": partner, "period": "2026-10"})).json()[
        "items"
    ]
    assert (ahead["basis"], ahead["invoice_number"], ahead["invoice_expected_on"]) == ("rated_charges", None, "2026-11-10")
    assert (ahead["this_period_total"], ahead["last_period_total"], ahead["previous_invoice_number"]) == ("619.50", "584.50", "TSD-000001")
    sheet = load_workbook(io.BytesIO((await client.get(f"/v1/comparison-reports/{ahead['id']}/xlsx", headers=tenant_headers(tenant))).content))["Summary"]
    assert [sheet.cell(2, c).value for c in (1, 2, 3, 4)] == ["This invoice", "to be invoiced on 10 November 2026", "Previous invoice", "TSD-000001"]
    sent = await _ready_events(runtime, partner)
    assert [(t, e.get("basis"), e.get("invoice_number")) for t, e in sent][-1:] == [("billing.comparison_report.ready.v1", "rated_charges", None)]

    # The bill run of the 10th: the partner's invoice as announced, the other's with a late line.
    clock.set(datetime(2026, 11, 10, 8, tzinfo=UTC))
    late = line("o9", "SHIP-GND", "1", "52.50", None, OCT)
    async with runtime.transaction() as session:
        invoice_id = await issue_invoice(runtime, session, period_closed(tenant, partner, october, start=OCT[0], end=OCT[1], tier="wholesale"))
        await issue_invoice(runtime, session, period_closed(tenant, other, [*october, late], start=OCT[0], end=OCT[1], tier="wholesale"))
    [invoiced] = (await client.get("/v1/comparison-reports", headers=tenant_headers(tenant), params={"buyer_account_id": partner, "period": "2026-10"})).json()[
        "items"
    ]
    assert (invoiced["id"], invoiced["invoice_id"], invoiced["basis"], invoiced["invoice_number"]) == (ahead["id"], invoice_id, "invoice", "TSD-000003")
    assert invoiced["rows"] == ahead["rows"]
    # One report for the partner, sent on the 2nd, before the invoice; the invoice issued on the 10th.
    october_sent = [(t, e) for t, e in await _ready_events(runtime, partner) if e["period_start"] == "2026-10-01"]
    assert [t for t, _ in october_sent] == ["billing.comparison_report.ready.v1", "billing.invoice.issued.v1"]
    assert october_sent[1][1]["issued_on"] == "2026-11-10"
    async with runtime.sessions() as session:
        created = await session.scalar(text("SELECT created_at FROM invoicing.comparison_report WHERE report_id = :r"), {"r": ahead["id"]})
    assert created == datetime(2026, 11, 2, 8, tzinfo=UTC)
    # The other partner's invoice differs from what was announced: its report is sent again, revised.
    other_sent = [(t, e) for t, e in await _ready_events(runtime, other) if e["period_start"] == "2026-10-01"]
    assert [(t, e.get("basis"), e.get("revised"), e.get("invoice_number")) for t, e in other_sent] == [
        ("billing.comparison_report.ready.v1", "rated_charges", False, None),
        ("billing.comparison_report.ready.v1", "invoice", True, "TSD-000004"),
        ("billing.invoice.issued.v1", None, None, None),
    ]
    assert other_sent[1][1]["lines_added"] == 1 and other_sent[1][1]["this_period_total"]["amount"] == "672.00"
