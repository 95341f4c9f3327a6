"""Seed 001's project-work statements: entering time and materials (rating's ProjectWorkRecorded)
makes a numbered, informational statement at once; its PDF says no payment is due."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from decimal import Decimal

import httpx
import pytest
from invoicing_testkit import pdf_fonts, put_seller
from sqlalchemy import text
from test_consolidated import NORTHWIND, keep_for_review

from billing_events import Money, ProjectWorkRecorded, account_id
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import tenant_headers
from invoicing.config import Settings
from invoicing.projectwork.service import issue_statement

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)


def entry(distributor: str, partner: str, entry_id: str, hours: str, *, rate: str = "125.00") -> ProjectWorkRecorded:
    return ProjectWorkRecorded(
        entry_id=entry_id,
        seller_id=distributor,
        buyer_account_id=partner,
        tier="wholesale",
        end_customer_id=account_id(partner, "contoso"),
        end_customer_name="Contoso Dental",
        product_code="PROJ-TM",
        description="Project work: server build",
        category="Hardware as a Project",
        unit="hour",
        performed_on=date(2026, 10, 14),
        quantity=Decimal(hours),
        unit_price=Money.of(rate, "USD"),
        amount=Money.of(Decimal(hours) * Decimal(rate), "USD"),
        billed_with_period_start=date(2026, 10, 1),
        billed_with_period_end=date(2026, 10, 31),
    )


async def test_time_and_materials_make_a_numbered_statement_with_no_payment_due(
    client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str
) -> None:
    distributor, partner = tenant, f"{tenant}-northwind"
    await put_seller(client, distributor, name="Tailspin Distribution Inc.", invoice_prefix="TSD")
    await put_seller(client, partner, **NORTHWIND)
    made = []
    first, second = entry(distributor, partner, "tm-1", "2.5"), entry(distributor, partner, "tm-2", "1.25", rate="95.10")
    entries = (first, second, first)
    for work in entries:
        async with runtime.transaction() as session:
            made.append(await issue_statement(runtime, session, work))
    assert made[0] is not None and made[1] is not None and made[2] is None  # the same entry again issues nothing

    listed = (await client.get("/v1/project-work-statements", headers=tenant_headers(distributor))).json()["items"]
    # Gapless in their own series, apart from the seller's invoices (TSD-000001 …).
    assert [(s["number"], s["amount"], s["amount_due"], s["end_customer_name"]) for s in listed] == [
        ("TSD-PW-000002", "118.88", "0.00", "Contoso Dental"),
        ("TSD-PW-000001", "312.50", "0.00", "Contoso Dental"),
    ]
    assert (await client.get(f"/v1/project-work-statements/{made[0]}", headers=tenant_headers(f"{tenant}-other"))).status_code == 404

    r = await client.get(f"/v1/project-work-statements/{made[0]}/pdf", headers=tenant_headers(distributor))
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf", r.text
    keep_for_review(r.content, "project-work-statement")
    pdf_text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=r.content, capture_output=True, check=True).stdout.decode()
    for expected in (
        "Project work statement TSD-PW-000001",
        "No payment is due.",
        "Tailspin Distribution Inc.",
        "Northwind IT LLC",
        "Cedar Rapids",
        "Contoso Dental",
        "PROJ-TM",
        "2026-10-14",
        "2.5 hour",
        "312.50 USD",
        "Amount due now: 0.00 USD",
        "2026-10-01 – 2026-10-31",
    ):
        assert expected in pdf_text, (expected, pdf_text)
    # One typeface throughout: the page-number footer included (it printed in the default serif).
    assert pdf_fonts(r.content) == {"DejaVu-Sans"}

    async with runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT value FROM invoicing.outbox WHERE event_type = 'billing.project_work_statement.issued.v1' AND key = :k ORDER BY id"),
            {"k": partner.encode()},
        )
        events = [json.loads(v) for (v,) in rows]
    assert [(e["number"], e["amount"]["amount"], e["buyer"]["name"]) for e in events] == [
        ("TSD-PW-000001", "312.50", "Northwind IT LLC"),
        ("TSD-PW-000002", "118.88", "Northwind IT LLC"),
    ]
    # The email's attachment comes through the statement's shared link: no key, the same bytes.
    [pdf_link] = events[0]["documents"]
    shared = await client.get(pdf_link["shared_url"])
    assert shared.status_code == 200 and shared.content == r.content
