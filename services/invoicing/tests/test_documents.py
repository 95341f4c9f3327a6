"""PDF and Factur-X documents read back: pypdf for the text, factur-x for the embedded EN 16931 XML."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import facturx
import httpx
import pytest
from invoicing_testkit import INVOICE_DATE, customer, example_a_lines, period_closed, poll, put_seller, rated
from lxml import etree
from prometheus_client import REGISTRY
from pypdf import PdfReader
from sqlalchemy import text

from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import serve, tenant_headers
from invoicing.buyer.service import record_customer
from invoicing.config import Settings
from invoicing.db import metadata
from invoicing.documents import service as documents_service
from invoicing.invoice.service import issue_invoice
from invoicing.main import build

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}
CLOUDY = {
    "name": "Cloudy Ltd",
    "country": "IE",
    "vat_id": "IE6388047V",
    "invoice_prefix": "CL",
    "due_rule": {"net_days": 14},
    "registration": "IE-CRO 123456",
    "brand_color": "#0a7d3b",
    "address": {"lines": ["1 Grand Canal Square"], "city": "Dublin", "postal_code": "D02 P820", "country": "IE"},
}


async def issue(runtime: ServiceRuntime[Settings], tenant: str, external_id: str, lines: Any, currency: str = "EUR", **who: Any) -> str:
    buyer = customer(tenant, external_id, external_id.title(), currency=currency, **who)
    async with runtime.transaction() as session:
        await record_customer(runtime, session, buyer)
        invoice_id = await issue_invoice(runtime, session, period_closed(tenant, buyer.account_id, lines, currency=currency))
    assert invoice_id is not None
    return invoice_id


def read_back(pdf: bytes) -> tuple[str, etree._Element]:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    assert name == "factur-x.xml"
    return text, etree.fromstring(xml)


def amount(xml: etree._Element, path: str) -> Decimal:
    return Decimal(xml.findtext(path, namespaces=NS))


async def test_invoice_pdf_and_factur_x_match_the_invoice(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    lines = [rated("l1", "M365-BP", "5", "20.60", "EUR", description="Microsoft 365 Business Premium"), rated("l2", "SHIP", "1", "52.50", "EUR")]
    invoice_id = await issue(runtime, tenant, "bakery", lines, country="IE")
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()

    r = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="{invoice["number"]}.pdf"'
    text, xml = read_back(r.content)
    for expected in (invoice["number"], "Cloudy Ltd", "IE6388047V", "Bakery", "Microsoft 365 Business Premium", "191.27", "35.77", "2026-11-16"):
        assert expected in text, expected
    assert facturx.get_level(xml) == "en16931"
    assert xml.findtext("rsm:ExchangedDocument/ram:ID", namespaces=NS) == invoice["number"]
    assert xml.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NS) == "380"
    summation = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert amount(xml, summation + "ram:LineTotalAmount") == Decimal(invoice["net_total"])
    assert amount(xml, summation + "ram:TaxTotalAmount") == Decimal(invoice["tax_total"])
    assert amount(xml, summation + "ram:GrandTotalAmount") == Decimal(invoice["total"]) == Decimal("191.27")
    seller_vat = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement/ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID"
    assert xml.findtext(seller_vat, namespaces=NS) == "IE6388047V"

    # Kept once rendered: the second download is the same document, byte for byte.
    again = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))
    assert again.content == r.content
    r_xml = await client.get(f"/v1/invoices/{invoice_id}/xml", headers=tenant_headers(tenant))
    assert (r_xml.status_code, r_xml.headers["content-type"]) == (200, "application/xml")
    assert etree.fromstring(r_xml.content).findtext("rsm:ExchangedDocument/ram:ID", namespaces=NS) == invoice["number"]
    assert (await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers("someone-else"))).status_code == 404


async def test_reverse_charge_credit_note_documents(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    invoice_id = await issue(runtime, tenant, "acme", [rated("l1", "M365-BP", "10", "20.60", "EUR")], country="DE", vat_id="DE136695976")
    _, invoice_xml = read_back((await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content)
    tax = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/"
    assert invoice_xml.findtext(tax + "ram:CategoryCode", namespaces=NS) == "AE"
    assert invoice_xml.findtext(tax + "ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-AE"

    r = await client.post(
        f"/v1/invoices/{invoice_id}/credit-notes", headers={**tenant_headers(tenant), "Idempotency-Key": "cn-1"}, json={"reason": "Seats unused"}
    )
    assert r.status_code == 201, r.text
    note = r.json()
    pdf = await client.get(f"/v1/credit-notes/{note['id']}/pdf", headers=tenant_headers(tenant))
    assert pdf.status_code == 200, pdf.text
    text, xml = read_back(pdf.content)
    assert note["number"] in text and "Reverse charge" in text and "Seats unused" in text
    assert xml.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NS) == "381"
    summation = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert -amount(xml, summation + "ram:GrandTotalAmount") == Decimal(note["total"]) == Decimal("-206.00")
    referenced = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/ram:InvoiceReferencedDocument/ram:IssuerAssignedID"
    assert xml.findtext(referenced, namespaces=NS) == (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()["number"]


async def test_worked_example_a_document_and_a_seller_without_a_country(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, name="Tailspin Distribution Inc.", country="US", invoice_prefix="TSD", due_rule={"day_of_next_month": 5})
    invoice_id = await issue(runtime, tenant, "northwind", example_a_lines(), currency="USD", country="US")
    text, xml = read_back((await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content)
    assert "1516.25" in text and "2026-12-05" in text
    summation = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert amount(xml, summation + "ram:GrandTotalAmount") == Decimal("1516.25")

    unconfigured = f"{tenant}-new"
    other = await issue(runtime, unconfigured, "someone", [rated("l1", "X", "1", "10.00")], currency="USD")
    r = await client.get(f"/v1/invoices/{other}/pdf", headers=tenant_headers(unconfigured))
    assert (r.status_code, r.json()["code"]) == (409, "document_unavailable")


async def issued_documents(runtime: ServiceRuntime[Settings], invoice_id: str) -> list[dict[str, Any]]:
    """The documents of the invoice's InvoiceIssued event, as it sits in the outbox."""
    async with runtime.sessions() as session:
        value = await session.scalar(
            text("SELECT value FROM invoicing.outbox WHERE event_type = 'billing.invoice.issued.v1' AND convert_from(value, 'UTF8') LIKE :id"),
            {"id": f"%{invoice_id}%"},
        )
    documents: list[dict[str, Any]] = json.loads(value)["documents"]
    return documents


async def test_shared_links_open_the_invoice_documents_without_a_key(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    invoice_id = await issue(runtime, tenant, "bakery", [rated("l1", "M365-BP", "5", "20.60", "EUR")], country="IE")
    detail = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    links = {d["kind"]: d for d in detail["documents"]}
    assert set(links) == {"pdf", "cii_xml", "ubl_xml"} and links["pdf"]["url"] == f"/v1/invoices/{invoice_id}/pdf"
    assert links["ubl_xml"]["url"] == f"/v1/invoices/{invoice_id}/xml?syntax=ubl"
    # The event announces the same links; without INVOICING_PUBLIC_BASE_URL they are relative to invoicing.
    assert {d["kind"]: d["shared_url"] for d in await issued_documents(runtime, invoice_id)} == {k: d["shared_url"] for k, d in links.items()}
    pdf_link, xml_link, ubl_link = links["pdf"]["shared_url"], links["cii_xml"]["shared_url"], links["ubl_xml"]["shared_url"]
    assert pdf_link.startswith("/v1/shared/") and len(pdf_link) > len("/v1/shared/") + 40 and len({pdf_link, xml_link, ubl_link}) == 3

    shared = await client.get(pdf_link)  # no X-Tenant-Id, no key
    assert shared.status_code == 200, shared.text
    assert shared.headers["content-type"] == "application/pdf"
    assert shared.headers["content-disposition"] == f'inline; filename="{detail["number"]}.pdf"'
    assert shared.headers["referrer-policy"] == "no-referrer"
    assert shared.content == (await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content
    xml = await client.get(xml_link)
    assert xml.status_code == 200 and etree.fromstring(xml.content).findtext("rsm:ExchangedDocument/ram:ID", namespaces=NS) == detail["number"]
    # The UBL link serves the same UBL as the API's ?syntax=ubl, for accounting tools that take UBL.
    ubl = await client.get(ubl_link)
    assert ubl.status_code == 200 and ubl.headers["content-type"] == "application/xml"
    assert ubl.headers["content-disposition"] == f'attachment; filename="{detail["number"]}.ubl.xml"'
    assert etree.fromstring(ubl.content).tag == "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
    assert ubl.content == (await client.get(links["ubl_xml"]["url"], headers=tenant_headers(tenant))).content

    for guess in ("/v1/shared/" + "A" * 43, "/v1/shared/" + invoice_id, "/v1/shared/%27%20OR%201%3D1"):
        r = await client.get(guess)
        assert (r.status_code, r.json()["code"]) == (404, "shared_document_not_found"), guess

    # Rotated: the old links die at once, the new ones open the same documents. Only the seller can.
    other = await client.post(f"/v1/invoices/{invoice_id}/shared-links/rotate", headers=tenant_headers(f"other-{tenant}"))
    assert (other.status_code, other.json()["code"]) == (404, "invoice_not_found")
    assert (await client.get(pdf_link)).status_code == 200
    rotated = await client.post(f"/v1/invoices/{invoice_id}/shared-links/rotate", headers=tenant_headers(tenant))
    assert rotated.status_code == 200, rotated.text
    new = {d["kind"]: d["shared_url"] for d in rotated.json()["documents"]}
    assert set(new) == {"pdf", "cii_xml", "ubl_xml"} and not {pdf_link, xml_link, ubl_link} & set(new.values())
    for old in (pdf_link, xml_link, ubl_link):
        assert (await client.get(old)).status_code == 404
    assert (await client.get(new["pdf"])).content == shared.content
    assert (await client.get(new["cii_xml"])).content == xml.content
    assert (await client.get(new["ubl_xml"])).content == ubl.content
    detail = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    assert {d["kind"]: d["shared_url"] for d in detail["documents"]} == new


async def test_shared_links_are_absolute_with_a_public_base_url(migrated: str, tenant: str, client: httpx.AsyncClient) -> None:
    await put_seller(client, tenant, **CLOUDY)
    public = ServiceRuntime(
        "invoicing", Settings(database_url=migrated, clock_fixed_at=INVOICE_DATE, public_base_url="https://billing.example.com/invoicing/"), metadata
    )
    try:
        invoice_id = await issue(public, tenant, "bakery", [rated("l1", "M365-BP", "5", "20.60", "EUR")], country="IE")
        links = {d["kind"]: d["shared_url"] for d in await issued_documents(public, invoice_id)}
    finally:
        await public.engine.dispose()
    assert links["pdf"].startswith("https://billing.example.com/invoicing/v1/shared/")
    # The path after the public base is the one invoicing serves.
    assert (await client.get(links["pdf"].removeprefix("https://billing.example.com/invoicing"))).status_code == 200


async def test_documents_render_ahead_once_and_a_download_joins_a_rendering(migrated: str, kafka_bootstrap: str, tenant: str) -> None:
    """An issued invoice's documents are stored by the background renderer before anyone asks;
    concurrent first downloads of a document not yet stored render it once, in the rendering
    processes, and all get the bytes kept."""
    # An instant of its own: the session's other invoices (all at INVOICE_DATE) are behind the renderer's floor.
    at = INVOICE_DATE + timedelta(days=40, microseconds=uuid.uuid4().int % 1_000_000)
    ahead = Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, clock_fixed_at=at, render_ahead=True, render_ahead_poll_ms=50)
    lazy = ServiceRuntime("invoicing", Settings(database_url=migrated, clock_fixed_at=at, render_ahead=False), metadata)
    try:
        async with serve(build(ahead), consume=False) as client:
            await put_seller(client, tenant, **CLOUDY)
            invoice_id = await issue(lazy, tenant, "bakery", [rated("l1", "M365-BP", "5", "20.60", "EUR")], country="IE")

            async def stored() -> list[Any]:
                async with lazy.engine.connect() as conn:
                    query = text("SELECT format, content FROM invoicing.document WHERE owner_kind = 'invoice' AND owner_id = :id ORDER BY format")
                    return list(await conn.execute(query, {"id": invoice_id}))

            rows = await poll(stored, lambda r: len(r) == 2, timeout=120)
            assert [r.format for r in rows] == ["pdf", "xml"]
            pdf = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))
            assert pdf.status_code == 200 and pdf.content == rows[0].content
            text_, xml = read_back(pdf.content)
            assert "Cloudy Ltd" in text_ and facturx.get_level(xml) == "en16931"

            # A credit note is not rendered ahead: three downloads at once render it once.
            credit = {**tenant_headers(tenant), "Idempotency-Key": "cn-ahead"}
            note = await client.post(f"/v1/invoices/{invoice_id}/credit-notes", headers=credit, json={"reason": "Seats unused"})
            assert note.status_code == 201, note.text
            note_id = note.json()["id"]
            before = REGISTRY.get_sample_value("billing_documents_rendered_total", {"kind": "credit_note"}) or 0
            pdfs = await asyncio.gather(*(client.get(f"/v1/credit-notes/{note_id}/pdf", headers=tenant_headers(tenant)) for _ in range(3)))
            assert [r.status_code for r in pdfs] == [200, 200, 200]
            assert len({r.content for r in pdfs}) == 1
            assert REGISTRY.get_sample_value("billing_documents_rendered_total", {"kind": "credit_note"}) == before + 1
    finally:
        await lazy.engine.dispose()


async def test_a_rendering_that_lost_the_race_answers_the_bytes_stored_first(migrated: str, kafka_bootstrap: str, tenant: str) -> None:
    """Two processes may render one document at once: the first stored wins, and the other answers
    the stored bytes, not its own rendering (only the formats it did not store are read back)."""
    at = INVOICE_DATE + timedelta(days=41, microseconds=uuid.uuid4().int % 1_000_000)
    runtime = ServiceRuntime("invoicing", Settings(database_url=migrated, clock_fixed_at=at, render_ahead=False), metadata)
    try:
        async with serve(
            build(Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, clock_fixed_at=at, render_ahead=False)), consume=False
        ) as client:
            await put_seller(client, tenant, **CLOUDY)
        invoice_id = await issue(runtime, tenant, "racer", [rated("l1", "M365-BP", "2", "20.60", "EUR")], country="IE")
        first = b"%PDF-1.7 stored first by another process"
        async with runtime.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO invoicing.document (owner_kind, owner_id, seller_id, format, content, rendered_at)"
                    " VALUES ('invoice', :id, :seller, 'pdf', :content, :at)"
                ),
                {"id": invoice_id, "seller": tenant, "content": first, "at": at},
            )
        content = await documents_service._content(runtime, tenant, "invoice", invoice_id)
        made = await documents_service.rendered(runtime, tenant, "invoice", invoice_id, content)
        assert made["pdf"] == first
        async with runtime.engine.connect() as conn:
            query = text("SELECT format, content FROM invoicing.document WHERE owner_kind = 'invoice' AND owner_id = :id")
            rows: dict[str, bytes] = dict((await conn.execute(query, {"id": invoice_id})).tuples().all())
        assert rows["pdf"] == first and made["xml"] == rows["xml"]
        assert b"CrossIndustryInvoice" in made["xml"]
    finally:
        documents_service.shutdown_pool()
        await runtime.engine.dispose()
