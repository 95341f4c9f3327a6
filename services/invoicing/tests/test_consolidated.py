"""Seed 001's consolidated partner invoice (worked example A as the distributor bills it), the
partner's retail invoice in its own name, and the preview that equals the invoice later issued."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import httpx
import pytest
from invoicing_testkit import buyer_known, customer, event, pdf_fonts, period_closed, put_seller, rated, wait_for_invoices

from billing_events import RatedLine, account_id
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import publish_events, serve, tenant_headers
from invoicing.config import Settings
from invoicing.invoice.service import issue_invoice
from invoicing.main import build

NORTHWIND = {
    "name": "Northwind IT LLC",
    "country": "US",
    "vat_id": None,
    "invoice_prefix": "NWIT",
    "due_rule": {"net_days": 10},
    "address": {"lines": ["100 Main St"], "city": "Cedar Rapids", "postal_code": "52401", "region": "IA", "country": "US"},
}


def line(line_id: str, code: str, qty: str, price: str, category: str, *, kind: str = "recurring", who: tuple[str, str] | None = None) -> RatedLine:
    update: dict[str, Any] = {"category": category, "kind": kind, "description": code}
    if who:
        update |= {"end_customer_id": who[0], "end_customer_name": who[1]}
    return rated(line_id, code, qty, price).model_copy(update=update)


def example_a_wholesale(partner_tenant: str) -> list[RatedLine]:
    contoso = (account_id(partner_tenant, "contoso"), "Contoso Dental")
    fabrikam = (account_id(partner_tenant, "fabrikam"), "Fabrikam Law")
    return [
        line("c-usr", "USR-SUP", "15", "35.00", "Remote Monitoring and Management", who=contoso),
        line("c-srv", "SRV-SUP", "3", "85.00", "Remote Monitoring and Management", who=contoso),
        line("c-wks", "WKS-SUP", "18", "12.50", "Remote Monitoring and Management", who=contoso),
        line("c-eml", "EML-HST", "11", "6.75", "Communications", who=contoso),
        line("f-setup", "SETUP-CORE", "8", "25.00", "Co-Managed Services", kind="one_time", who=fabrikam),
        line("p-stl", "STL-LIC", "2", "47.25", "Software as a Service"),
        line("p-itg", "ITG-LIC", "3", "30.00", "Software as a Service"),
        line("p-ship", "SHIP-GND", "1", "52.50", "Miscellaneous", kind="shipping"),
    ]


def comparable(invoice: dict[str, Any]) -> dict[str, Any]:
    keys = ("buyer_account_id", "buyer_name", "description", "period_start", "period_end", "issued_on", "due_on", "currency", "net_total", "tax_total", "total")
    return {k: invoice[k] for k in keys + ("tier", "flags", "seller", "buyer", "tax_breakdown", "lines", "sections")}


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_consolidated_partner_invoice_and_its_preview(settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    distributor, partner = tenant, f"{tenant}-northwind"
    # Only the distributor's wholesale preview may name a partner's seller profile.
    async with serve(build(settings.model_copy(update={"distributor_id": distributor}))) as client:
        await _consolidated_partner_invoice_and_its_preview(client, distributor, partner, kafka_bootstrap)


async def _consolidated_partner_invoice_and_its_preview(client: httpx.AsyncClient, distributor: str, partner: str, kafka_bootstrap: str) -> None:
    await put_seller(client, distributor, name="Tailspin Distribution Inc.", invoice_prefix="TSD", due_rule={"day_of_next_month": 5})
    await put_seller(client, partner, **NORTHWIND)
    lines = example_a_wholesale(partner)

    body: dict[str, Any] = {"buyer_account_id": partner, "period_start": "2026-10-01", "period_end": "2026-10-31", "currency": "USD", "tier": "wholesale"}
    body["lines"] = [li.model_dump(mode="json") for li in lines]
    r = await client.post("/v1/invoices/preview", headers=tenant_headers(distributor), json=body)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert (preview["total"], preview["issued_on"], preview["due_on"], preview["already_issued"]) == ("1516.25", "2026-11-02", "2026-12-05", False)

    await publish_events(client, event(period_closed(distributor, partner, lines, tier="wholesale"), distributor))
    [summary] = await wait_for_invoices(client, distributor, 1)
    invoice = (await client.get(f"/v1/invoices/{summary['id']}", headers=tenant_headers(distributor))).json()
    assert summary["id"] == preview["invoice_id"]
    assert comparable(preview) == comparable(invoice)

    assert (invoice["number"], invoice["tier"], invoice["total"]) == ("TSD-000001", "wholesale", "1516.25")
    parties = (invoice["buyer"]["name"], invoice["buyer"]["address"]["city"], invoice["seller"]["name"])
    assert parties == ("Northwind IT LLC", "Cedar Rapids", "Tailspin Distribution Inc.")
    sections = invoice["sections"]
    assert sections["own_environment"] == ["p-stl", "p-itg"]
    assert sections["shipping"] == ["p-ship"]
    assert sections["project_work"] == []
    assert [(s["end_customer_name"], s["net"], s["line_ids"]) for s in sections["end_customers"]] == [
        ("Contoso Dental", "1079.25", ["c-usr", "c-srv", "c-wks", "c-eml"]),
        ("Fabrikam Law", "200.00", ["f-setup"]),
    ]
    assert [(p["product_code"], p["quantity"], p["net"]) for p in sections["customer_charges_by_product"]] == [
        ("EML-HST", "11", "74.25"),
        ("SETUP-CORE", "8", "200.00"),
        ("SRV-SUP", "3", "255.00"),
        ("USR-SUP", "15", "525.00"),
        ("WKS-SUP", "18", "225.00"),
    ]
    assert len(sections["product_codes"]) == 8
    assert {c["category"]: c["net"] for c in sections["categories"]} == {
        "Co-Managed Services": "200.00",
        "Communications": "74.25",
        "Miscellaneous": "52.50",
        "Remote Monitoring and Management": "1005.00",
        "Software as a Service": "184.50",
    }

    # After issue the preview says so, and is otherwise unchanged.
    again = (await client.post("/v1/invoices/preview", headers=tenant_headers(distributor), json=body)).json()
    assert again["already_issued"] is True and comparable(again) == comparable(invoice)


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_retail_invoice_in_the_partners_name(client: httpx.AsyncClient, settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    partner = tenant
    await put_seller(client, partner, **NORTHWIND)
    contoso = customer(partner, "contoso", "Contoso Dental")
    await publish_events(client, event(contoso, partner))
    await buyer_known(settings, contoso.account_id)  # a preview names a buyer the seller has
    r = await client.post(
        "/v1/invoices/preview",
        headers=tenant_headers(partner),
        json={
            "buyer_account_id": contoso.account_id,
            "period_start": "2026-10-01",
            "period_end": "2026-10-31",
            "currency": "USD",
            "lines": [rated("r1", "USR-SUP", "15", "45.00").model_dump(mode="json")],
        },
    )
    assert r.status_code == 200, r.text
    assert (r.json()["seller"]["name"], r.json()["seller"]["address"]["city"], r.json()["total"], r.json()["due_on"]) == (
        "Northwind IT LLC",
        "Cedar Rapids",
        "675.00",
        "2026-11-12",
    )


@pytest.mark.consume(False)  # events handed over in process (deliver)
async def test_preview_rejects_bad_input(client: httpx.AsyncClient, settings: Settings, tenant: str, kafka_bootstrap: str) -> None:
    await put_seller(client, tenant, name="Cloudy Ltd", country="IE", vat_id="IE6388047V", invoice_prefix="CL")
    known = customer(tenant, "known", "Known Buyer", country="IE", currency="EUR")
    await publish_events(client, event(known, tenant))
    await buyer_known(settings, known.account_id)
    base = {"buyer_account_id": known.account_id, "period_start": "2026-10-01", "period_end": "2026-10-31", "currency": "EUR"}
    eur = rated("l1", "X", "1", "1.00", "EUR").model_dump(mode="json")
    for body, status, code in (
        ({**base, "buyer_account_id": "nobody", "lines": [eur]}, 404, "buyer_not_found"),
        ({**base, "currency": "ZZZ", "lines": [rated("l1", "X", "1", "1.00", "ZZZ").model_dump(mode="json")]}, 422, "unknown_currency"),  # refused at the edge
        ({**base, "lines": [rated("l1", "X", "1", "1.00", "USD").model_dump(mode="json")]}, 400, "currency_mismatch"),
        ({**base, "lines": [{**eur, "amount": {"amount": 1.5, "currency": "EUR"}}]}, 422, "validation_error"),
    ):
        r = await client.post("/v1/invoices/preview", headers=tenant_headers(tenant), json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), body


def keep_for_review(pdf: bytes, name: str) -> None:
    """With DOCS_SHOTS_DIR set, the PDF and its pages as PNG (pdftoppm) for a person to look at."""
    directory = os.environ.get("DOCS_SHOTS_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{name}.pdf")
        with open(path, "wb") as f:
            f.write(pdf)
        subprocess.run(["pdftoppm", "-png", "-r", "80", path, os.path.join(directory, name)], check=True)


def pdf_text(pdf: bytes) -> str:
    """The PDF's text as a reader sees it, in reading order (poppler's pdftotext, layout kept)."""
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode()


async def test_consolidated_pdf_is_laid_out_in_seed_001s_sections(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """Worked example A as the distributor's PDF: own environment, customers' summary by product,
    one section per end customer with its project work inside it, shipping, product codes and
    category totals, each with its subtotal; 2.5 hours of Contoso's project work on top."""
    distributor, partner = tenant, f"{tenant}-northwind"
    await put_seller(client, distributor, name="Tailspin Distribution Inc.", invoice_prefix="TSD", due_rule={"day_of_next_month": 5})
    await put_seller(client, partner, **NORTHWIND)
    contoso = (account_id(partner, "contoso"), "Contoso Dental")
    project = line("c-proj", "PROJ-TM", "2.5", "125.00", "Hardware as a Project", kind="project_work", who=contoso)
    async with runtime.transaction() as session:
        invoice_id = await issue_invoice(runtime, session, period_closed(distributor, partner, [*example_a_wholesale(partner), project], tier="wholesale"))
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(distributor))).json()
    assert invoice["total"] == "1828.75"
    contoso_section = invoice["sections"]["end_customers"][0]
    assert (contoso_section["end_customer_name"], contoso_section["net"], contoso_section["line_ids"][-1]) == ("Contoso Dental", "1391.75", "c-proj")
    assert invoice["sections"]["project_work"] == ["c-proj"]

    r = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(distributor))
    assert r.status_code == 200, r.text
    keep_for_review(r.content, "consolidated-invoice")
    assert not {f for f in pdf_fonts(r.content) if "Serif" in f}  # footer and body in the one sans typeface
    text = pdf_text(r.content)
    headings = [
        "Charges for your internal environment",
        "Summary by product of charges relating to your customers",
        "Detailed subscriber report",
        "Contoso Dental",
        "Project work (time and materials)",
        "Fabrikam Law",
        "Shipping and handling",
        "Summary of product codes",
        "Totals by category",
    ]
    positions = [text.find(h, text.find("Charges for your internal environment")) for h in headings]
    assert -1 not in positions and positions == sorted(positions), dict(zip(headings, positions, strict=True))
    # Each section's subtotal, as the JSON sections and worked example A have them.
    for label, amount in (
        ("Subtotal, your internal environment", "184.50"),
        ("Subtotal, your customers", "1591.75"),
        ("Subtotal, Contoso Dental", "1391.75"),
        ("Subtotal, Fabrikam Law", "200.00"),
        ("Subtotal, shipping and handling", "52.50"),
    ):
        assert re.search(rf"{re.escape(label)}\s+{re.escape(amount)} USD", text), label
    contoso_block = text[text.find("Contoso Dental", positions[2]) : text.find("Fabrikam Law", positions[2])]
    # Each line says its VAT (here none: a US distributor billing a US partner).
    assert "PROJ-TM" in contoso_block and re.search(r"2\.5\s+125\s+Not subject to VAT\s+312\.50", contoso_block), contoso_block
    categories = text[positions[-1] :]
    for category, amount in (("Hardware as a Project", "312.50"), ("Remote Monitoring and Management", "1005.00"), ("Software as a Service", "184.50")):
        assert re.search(rf"{category}\s+{re.escape(amount)}", categories), category
    assert re.search(r"Net total\s+1828\.75 USD", categories)


def eur(line_id: str, code: str, qty: str, price: str, category: str, *, kind: str = "recurring", who: tuple[str, str] | None = None) -> RatedLine:
    priced = rated(line_id, code, qty, price, "EUR")
    return line(line_id, code, qty, price, category, kind=kind, who=who).model_copy(update={"unit_price": priced.unit_price, "amount": priced.amount})


async def test_consolidated_pdf_lines_say_their_vat(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """An Irish distributor billing an Irish partner (domestic, 23 %): every line of every section
    says its VAT rate; the VAT itself is computed once per rate over the invoice (BILLING-RULES §6)
    and printed in the totals, so the sections' net subtotals and the totals add up to the cent."""
    distributor, partner = tenant, f"{tenant}-partner"
    irish = {"country": "IE", "address": {"lines": ["1 Grand Canal Square"], "city": "Dublin", "postal_code": "D02 P820", "country": "IE"}}
    await put_seller(client, distributor, name="Tailspin Ireland Ltd", vat_id="IE6388047V", invoice_prefix="TSI", **irish)
    await put_seller(client, partner, name="Northwind IT Ltd", invoice_prefix="NWI", **irish)
    contoso = (account_id(partner, "contoso"), "Contoso Dental")
    lines = [
        eur("c-usr", "USR-SUP", "15", "35.00", "Remote Monitoring and Management", who=contoso),
        eur("c-proj", "PROJ-TM", "2.5", "125.00", "Hardware as a Project", kind="project_work", who=contoso),
        eur("p-stl", "STL-LIC", "2", "47.25", "Software as a Service"),
        eur("p-ship", "SHIP-GND", "1", "52.50", "Miscellaneous", kind="shipping"),
    ]
    async with runtime.transaction() as session:
        invoice_id = await issue_invoice(runtime, session, period_closed(distributor, partner, lines, currency="EUR", tier="wholesale"))
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(distributor))).json()
    # 525.00 + 312.50 + 94.50 + 52.50 = 984.50 net; 23 % of it, rounded once: 226.435 -> 226.44.
    assert (invoice["net_total"], invoice["tax_total"], invoice["total"]) == ("984.50", "226.44", "1210.94")
    r = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(distributor))
    assert r.status_code == 200, r.text
    keep_for_review(r.content, "consolidated-invoice-vat")
    text = pdf_text(r.content)
    for code, qty, price, net in (
        ("USR-SUP", "15", "35", "525.00"),
        ("PROJ-TM", "2.5", "125", "312.50"),
        ("STL-LIC", "2", "47.25", "94.50"),
        ("SHIP-GND", "1", "52.50", "52.50"),
    ):
        assert re.search(rf"{code}\s.*\s{re.escape(qty)}\s+{re.escape(price)}\s+23%\s+{re.escape(net)}", text), (code, text)
    assert re.search(r"Subtotal, Contoso Dental\s+837\.50 EUR", text)
    assert re.search(r"VAT 23% on 984\.50\s+226\.44 EUR", text) and re.search(r"Total\s+1210\.94 EUR", text)
