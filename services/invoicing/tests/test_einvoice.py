"""The e-invoices (CII and UBL) against the official EN 16931 rules, and the PDF's text as pdftotext
reads it: addresses, VAT ids, payment instructions, legal mentions in words, page numbers, logo."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import struct
import subprocess
import zlib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import facturx
import httpx
import pytest
from en16931 import assert_valid, findings, rules_ran
from invoicing_testkit import customer, event, pdf_fonts, period_closed, put_seller, rated
from lxml import etree
from pypdf import PdfReader
from pypdf.generic import StreamObject
from sqlalchemy import text

from billing_events import CollectingMethodChanged, InvoiceIssued, MandateChanged
from billing_events.references import creditor_reference, printed
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import tenant_headers
from invoicing.buyer.consumers import on_collecting_method_changed, on_mandate_changed
from invoicing.buyer.service import record_customer
from invoicing.config import Settings
from invoicing.documents.content import DocContent, DocLine, DocPayment, DocTax
from invoicing.documents.facturx import cii_xml
from invoicing.documents.ubl import ubl_xml
from invoicing.invoice.service import issue_invoice

# Nothing here needs the broker's consumer: the service is served without one (no JoinGroup wait).
pytestmark = pytest.mark.consume(False)

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
}
SETTLEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
IBAN, BIC = "IE29AIBK93115212345678", "AIBKIE2D"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain PNG image (a logo for the tests), written by hand: no imaging library needed."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


LOGO = "data:image/png;base64," + base64.b64encode(png(180, 60, (10, 125, 59))).decode()
CLOUDY = {
    "name": "Cloudy Ltd",
    "country": "IE",
    "vat_id": "IE6388047V",
    "invoice_prefix": "CLD",
    "due_rule": {"net_days": 14},
    "registration": "IE-CRO 123456",
    "brand_color": "#0a7d3b",
    "email": "billing@cloudy.example",
    "address": {"lines": ["1 Grand Canal Square", "Docklands"], "city": "Dublin", "postal_code": "D02 P820", "country": "IE"},
    "iban": "IE29 AIBK 9311 5212 3456 78",
    "bic": BIC,
    "sepa_creditor_id": "IE98ZZZ123456",
    "logo": LOGO,
}


def pdf_text(pdf: bytes) -> str:
    """The PDF's text as pdftotext (poppler) reads it, layout kept."""
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def keep_pages(pdf: bytes, name: str) -> None:
    """PNGs of the PDF's pages under $EN16931_PAGES (unset: nothing kept), for a person to look at."""
    import os

    where = os.environ.get("EN16931_PAGES")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        subprocess.run(["pdftoppm", "-r", "80", "-png", "-", str(Path(where) / name)], input=pdf, check=True)


def content(kind: Literal["invoice", "credit_note"] = "invoice", payment: DocPayment | None = None, category: str = "AE", rate: str = "0") -> DocContent:
    seller = {**{k: CLOUDY[k] for k in ("name", "country", "vat_id", "registration", "email", "address")}, "account_id": "cloudy"}
    buyer = {
        "account_id": "acme",
        "name": "Acme GmbH",
        "country": "DE",
        "vat_id": "DE136695976",
        "address": {"lines": ["Hauptstraße 1"], "city": "Berlin", "postal_code": "10115", "country": "DE"},
    }
    net = Decimal("206.00")
    tax = (net * Decimal(rate) / 100).quantize(Decimal("0.01"))
    note = {"AE": "Reverse charge: VAT to be accounted for by the recipient", "O": "Not subject to VAT", "E": "Exempt (Article 151)"}.get(category)
    october = (date(2026, 10, 1), date(2026, 10, 31))
    line = DocLine("l1", "M365-BP", "Microsoft 365 Business Premium", Decimal(10), None, Decimal("20.60"), net, category, Decimal(rate), *october)
    return DocContent(
        kind=kind,
        number="CLD-000042" if kind == "invoice" else "CLD-CN-000001",
        issued_on=date(2026, 11, 2),
        due_on=date(2026, 11, 16) if kind == "invoice" else None,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        currency="EUR",
        seller=seller,
        buyer=buyer,
        lines=[line],
        taxes=[DocTax(category, Decimal(rate), net, tax, note)],
        net_total=net,
        tax_total=tax,
        total=net + tax,
        payment=payment,
        invoice_number="CLD-000042" if kind == "credit_note" else None,
        reason="Seats unused" if kind == "credit_note" else None,
    )


TRANSFER = DocPayment("credit_transfer", creditor_reference=creditor_reference("CLD-000042"), iban=IBAN, bic=BIC, account_name="Cloudy Ltd")
DEBIT = DocPayment("direct_debit", mandate_reference="MD000123", creditor_identifier="IE98ZZZ123456")
CARD = DocPayment("card", card_last4="4242", card_brand="visa")


def test_the_official_rules_reject_what_strict_receivers_reject() -> None:
    """The check can fail: the CII as it was written before (currencyID on BT-109 and BT-112) gives
    the two fatal CII-DT-031 the issue reported, and a UBL whose payable amount disagrees gives BR-CO-16."""
    cii = etree.fromstring(cii_xml(content(payment=TRANSFER)))
    summation = cii.find(SETTLEMENT + "ram:SpecifiedTradeSettlementHeaderMonetarySummation", NS)
    assert summation is not None
    for tag in ("TaxBasisTotalAmount", "GrandTotalAmount"):
        node = summation.find(f"ram:{tag}", NS)
        assert node is not None and node.get("currencyID") is None
        node.set("currencyID", "EUR")
    found = findings(etree.tostring(cii), "cii")
    assert [f.rule_id for f in found if f.rules.startswith("EN16931")] == ["CII-DT-031", "CII-DT-031"] and {f.flag for f in found} == {"fatal"}

    ubl = etree.fromstring(ubl_xml(content(payment=TRANSFER)))
    payable = ubl.find("cac:LegalMonetaryTotal/cbc:PayableAmount", NS)
    assert payable is not None
    payable.text = "1.00"
    assert "BR-CO-16" in {f.rule_id for f in findings(etree.tostring(ubl), "ubl")}


@pytest.mark.parametrize("payment", [TRANSFER, DEBIT, CARD, None], ids=["transfer", "direct_debit", "card", "unknown"])
@pytest.mark.parametrize("category,rate", [("AE", "0"), ("S", "23"), ("O", "0"), ("E", "0")])
def test_both_syntaxes_pass_the_official_rules(payment: DocPayment | None, category: str, rate: str) -> None:
    for kind in ("invoice", "credit_note"):
        doc = content(kind, payment, category, rate)
        cii, ubl = cii_xml(doc), ubl_xml(doc)
        assert_valid(cii, "cii")
        assert_valid(ubl, "ubl")
        assert rules_ran(cii, "cii") > 50 and rules_ran(ubl, "ubl") > 30  # the rules really ran over the document


def test_payment_means_in_cii_and_ubl() -> None:
    reference = creditor_reference("CLD-000042")
    cii = etree.fromstring(cii_xml(content(payment=TRANSFER)))
    assert cii.findtext(SETTLEMENT + "ram:PaymentReference", namespaces=NS) == reference
    means = SETTLEMENT + "ram:SpecifiedTradeSettlementPaymentMeans/"
    assert cii.findtext(means + "ram:TypeCode", namespaces=NS) == "58"
    assert cii.findtext(means + "ram:PayeePartyCreditorFinancialAccount/ram:IBANID", namespaces=NS) == IBAN
    assert cii.findtext(means + "ram:PayeeSpecifiedCreditorFinancialInstitution/ram:BICID", namespaces=NS) == BIC
    assert cii.findtext(SETTLEMENT + "ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString", namespaces={**NS, "udt": NS_UDT}) == "20261116"
    ubl = etree.fromstring(ubl_xml(content(payment=TRANSFER)))
    assert ubl.findtext("cac:PaymentMeans/cbc:PaymentMeansCode", namespaces=NS) == "58"
    assert ubl.findtext("cac:PaymentMeans/cbc:PaymentID", namespaces=NS) == reference
    assert ubl.findtext("cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID", namespaces=NS) == IBAN
    assert ubl.findtext("cbc:CustomizationID", namespaces=NS) == "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
    assert ubl.findtext("cbc:DueDate", namespaces=NS) == "2026-11-16"
    for address in ("cac:AccountingSupplierParty", "cac:AccountingCustomerParty"):
        assert ubl.findtext(f"{address}/cac:Party/cac:PostalAddress/cbc:CityName", namespaces=NS) in ("Dublin", "Berlin")

    debit = etree.fromstring(cii_xml(content(payment=DEBIT)))
    assert debit.findtext(means + "ram:TypeCode", namespaces=NS) == "59"
    assert debit.findtext(SETTLEMENT + "ram:SpecifiedTradePaymentTerms/ram:DirectDebitMandateID", namespaces=NS) == "MD000123"
    assert debit.findtext(SETTLEMENT + "ram:CreditorReferenceID", namespaces=NS) == "IE98ZZZ123456"
    debit_ubl = etree.fromstring(ubl_xml(content(payment=DEBIT)))
    assert debit_ubl.findtext("cac:PaymentMeans/cac:PaymentMandate/cbc:ID", namespaces=NS) == "MD000123"

    card = etree.fromstring(cii_xml(content(payment=CARD)))
    assert card.findtext(means + "ram:TypeCode", namespaces=NS) == "48"
    assert card.findtext(means + "ram:ApplicableTradeSettlementFinancialCard/ram:ID", namespaces=NS) == "4242"
    card_ubl = etree.fromstring(ubl_xml(content(payment=CARD)))
    assert card_ubl.findtext("cac:PaymentMeans/cbc:PaymentMeansCode", namespaces=NS) == "48"
    assert card_ubl.findtext("cac:PaymentMeans/cac:CardAccount/cbc:PrimaryAccountNumberID", namespaces=NS) == "4242"
    assert card_ubl.findtext("cac:PaymentMeans/cac:CardAccount/cbc:NetworkID", namespaces=NS) == "Visa"


NS_UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"


async def issue_to_acme(runtime: ServiceRuntime[Settings], tenant: str) -> str:
    buyer = customer(tenant, "acme", "Acme GmbH", currency="EUR", country="DE", vat_id="DE136695976")
    async with runtime.transaction() as session:
        await record_customer(runtime, session, buyer)
        closed = period_closed(tenant, buyer.account_id, [rated("l1", "M365-BP", "10", "20.60", "EUR")], currency="EUR")
        invoice_id = await issue_invoice(runtime, session, closed)
    assert invoice_id is not None
    return invoice_id


async def test_pdf_says_who_what_and_how_to_pay(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    seller = await put_seller(client, tenant, **CLOUDY)
    assert seller["iban"] == IBAN and seller["logo"] == LOGO
    invoice_id = await issue_to_acme(runtime, tenant)
    number = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()["number"]
    pdf = (await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content
    keep_pages(pdf, "invoice-transfer")
    text = pdf_text(pdf)
    reference = creditor_reference(number)
    expected = [
        "Cloudy Ltd", "1 Grand Canal Square", "Docklands", "D02 P820 Dublin", "Ireland", "VAT number IE6388047V", "Company registration IE-CRO 123456",
        "Acme GmbH", "1 Acme GmbH Street", "Germany", "VAT number DE136695976",
        "How to pay", "IE29 AIBK 9311 5212 3456 78", BIC, printed(reference),
        "Reverse charge", "Article 196 of Council Directive 2006/112/EC", "page 1 of 1", "206.00",
    ]  # fmt: skip
    for piece in expected:
        assert piece in text, piece
    assert " AE " not in text and "AE 0%" not in text  # the category in words, not its code
    # The logo is on the page; the PDF is PDF/A-3 with the Factur-X XML, which has the payment means.
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages[0].images) >= 1
    metadata = reader.root_object["/Metadata"].get_object()
    assert isinstance(metadata, StreamObject)
    xmp = metadata.get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp or b'pdfaid:part="3"' in xmp, xmp[:2000]
    name, xml = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    assert name == "factur-x.xml"
    assert_valid(xml, "cii")
    tree = etree.fromstring(xml)
    assert tree.findtext(SETTLEMENT + "ram:PaymentReference", namespaces=NS) == reference
    assert tree.findtext(SETTLEMENT + "ram:SpecifiedTradeSettlementPaymentMeans/ram:PayeePartyCreditorFinancialAccount/ram:IBANID", namespaces=NS) == IBAN
    city = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement/ram:BuyerTradeParty/ram:PostalTradeAddress/ram:CityName"
    assert tree.findtext(city, namespaces=NS)

    ubl = await client.get(f"/v1/invoices/{invoice_id}/xml", params={"syntax": "ubl"}, headers=tenant_headers(tenant))
    assert ubl.status_code == 200 and ubl.headers["content-type"] == "application/xml"
    assert ubl.headers["content-disposition"] == f'attachment; filename="{number}.ubl.xml"'
    assert_valid(ubl.content, "ubl")
    root = etree.fromstring(ubl.content)
    assert root.tag == f"{{{NS['inv']}}}Invoice" and root.findtext("cac:PaymentMeans/cbc:PaymentID", namespaces=NS) == reference
    assert (await client.get(f"/v1/invoices/{invoice_id}/xml", params={"syntax": "ubl"}, headers=tenant_headers(tenant))).content == ubl.content
    assert (await client.get(f"/v1/invoices/{invoice_id}/xml", params={"syntax": "ubl"}, headers=tenant_headers("someone-else"))).status_code == 404
    bad = await client.get(f"/v1/invoices/{invoice_id}/xml", params={"syntax": "edifact"}, headers=tenant_headers(tenant))
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"

    r = await client.post(
        f"/v1/invoices/{invoice_id}/credit-notes", headers={**tenant_headers(tenant), "Idempotency-Key": "cn-1"}, json={"reason": "Seats unused"}
    )
    assert r.status_code == 201, r.text
    note = r.json()
    note_ubl = await client.get(f"/v1/credit-notes/{note['id']}/xml", params={"syntax": "ubl"}, headers=tenant_headers(tenant))
    assert note_ubl.status_code == 200
    assert etree.fromstring(note_ubl.content).tag.endswith("}CreditNote")
    assert_valid(note_ubl.content, "ubl")
    note_pdf = (await client.get(f"/v1/credit-notes/{note['id']}/pdf", headers=tenant_headers(tenant))).content
    keep_pages(note_pdf, "credit-note")
    note_text = pdf_text(note_pdf)
    assert note["number"] in note_text and "Corrects invoice" in note_text and "How to pay" not in note_text and "Germany" in note_text


async def test_direct_debit_invoice_after_a_mandate(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await put_seller(client, tenant, **CLOUDY)
    buyer = customer(tenant, "acme", "Acme GmbH", currency="EUR", country="DE", vat_id="DE136695976")
    async with runtime.transaction() as session:
        for mandate, status in (("MD-OLD", "active"), ("MD-NEW", "active"), ("MD-OLD", "cancelled")):
            changed = MandateChanged(mandate_id=mandate, seller_id=tenant, account_id=buyer.account_id, provider="gocardless", status=status)
            await on_mandate_changed(runtime, session, event(changed, tenant))
    invoice_id = await issue_to_acme(runtime, tenant)
    pdf = (await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content
    keep_pages(pdf, "invoice-direct-debit")
    text = pdf_text(pdf)
    # The old mandate's late cancellation does not undo the newer active one.
    assert "Collected by SEPA direct debit on 2026-11-16" in text and "MD-NEW" in text and "IE98ZZZ123456" in text
    assert "IBAN" not in text
    xml = (await client.get(f"/v1/invoices/{invoice_id}/xml", headers=tenant_headers(tenant))).content
    assert_valid(xml, "cii")
    assert etree.fromstring(xml).findtext(SETTLEMENT + "ram:SpecifiedTradePaymentTerms/ram:DirectDebitMandateID", namespaces=NS) == "MD-NEW"


def collecting(tenant: str, account: str, minute: int, method: str | None, **fields: Any) -> CollectingMethodChanged:
    """What payments announces when the method it collects `account` from changes, at 10:`minute`."""
    changed_at = datetime(2026, 10, 2, 10, minute, tzinfo=UTC)
    provider = {"card": "stripe", "direct_debit": "gocardless"}.get(method or "")
    return CollectingMethodChanged(seller_id=tenant, account_id=account, changed_at=changed_at, method=method, provider=provider, **fields)


async def test_card_invoice_after_payments_announces_the_card(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """The buyer's card, as payments announced it (CollectingMethodChanged), is what its invoice
    says: paid by that card on the invoice date (charged on issue), in the PDF and both XMLs. It
    wins over a mandate still active at GoCardless: payments collects from the buyer's default."""
    await put_seller(client, tenant, **CLOUDY)
    buyer = customer(tenant, "acme", "Acme GmbH", currency="EUR", country="DE", vat_id="DE136695976")
    account = buyer.account_id
    async with runtime.transaction() as session:
        await on_mandate_changed(
            runtime, session, event(MandateChanged(mandate_id="MD-1", seller_id=tenant, account_id=account, provider="gocardless", status="active"), tenant)
        )
        for changed in (
            collecting(tenant, account, 0, "direct_debit", method_id="dd-1", mandate_id="MD-1"),
            collecting(tenant, account, 5, "card", method_id="card-1", card_brand="visa", card_last4="4242", card_exp_month=12, card_exp_year=2034),
            collecting(tenant, account, 1, "direct_debit", method_id="dd-1", mandate_id="MD-1"),  # late, older: changes nothing
            collecting(f"other-{tenant}", account, 9, None),  # another seller's word about the account: not this seller's
        ):
            await on_collecting_method_changed(runtime, session, event(changed, changed.seller_id))
    invoice_id = await issue_to_acme(runtime, tenant)
    pdf = (await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content
    keep_pages(pdf, "invoice-card")
    text = " ".join(pdf_text(pdf).split())
    assert "Paid by Visa card ending 4242 on 2026-11-02: 206.00 EUR is charged to the card on file on the invoice date; nothing to do." in text, text
    assert "IBAN" not in text and "direct debit" not in text and "MD-1" not in text
    assert not {f for f in pdf_fonts(pdf) if "Serif" in f}
    xml = (await client.get(f"/v1/invoices/{invoice_id}/xml", headers=tenant_headers(tenant))).content
    assert_valid(xml, "cii")
    tree = etree.fromstring(xml)
    means = SETTLEMENT + "ram:SpecifiedTradeSettlementPaymentMeans/"
    assert tree.findtext(means + "ram:TypeCode", namespaces=NS) == "48"
    assert tree.findtext(means + "ram:ApplicableTradeSettlementFinancialCard/ram:ID", namespaces=NS) == "4242"
    assert tree.findtext(SETTLEMENT + "ram:SpecifiedTradePaymentTerms/ram:Description", namespaces=NS) == (
        "Paid by Visa card ending 4242 on 2026-11-02: the card on file is charged on the invoice date"
    )
    ubl = (await client.get(f"/v1/invoices/{invoice_id}/xml", params={"syntax": "ubl"}, headers=tenant_headers(tenant))).content
    assert_valid(ubl, "ubl")
    assert etree.fromstring(ubl).findtext("cac:PaymentMeans/cac:CardAccount/cbc:PrimaryAccountNumberID", namespaces=NS) == "4242"


async def test_direct_debit_invoice_after_payments_announces_the_mandate(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """A buyer whose card was replaced by a mandate as payments' default: collected by direct debit
    on the due date under the announced mandate, not charged to the card."""
    await put_seller(client, tenant, **CLOUDY)
    account = customer(tenant, "acme", "Acme GmbH", currency="EUR", country="DE", vat_id="DE136695976").account_id
    async with runtime.transaction() as session:
        for changed in (
            collecting(tenant, account, 0, "card", method_id="card-1", card_brand="visa", card_last4="4242"),
            collecting(tenant, account, 3, "direct_debit", method_id="dd-2", mandate_id="MD-2"),
        ):
            await on_collecting_method_changed(runtime, session, event(changed, tenant))
    invoice_id = await issue_to_acme(runtime, tenant)
    text = " ".join(pdf_text((await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content).split())
    assert "Collected by SEPA direct debit on 2026-11-16: nothing to do. Mandate reference MD-2, creditor identifier IE98ZZZ123456." in text, text
    assert "card" not in text.lower() and "IBAN" not in text
    xml = (await client.get(f"/v1/invoices/{invoice_id}/xml", headers=tenant_headers(tenant))).content
    assert_valid(xml, "cii")
    assert etree.fromstring(xml).findtext(SETTLEMENT + "ram:SpecifiedTradePaymentTerms/ram:DirectDebitMandateID", namespaces=NS) == "MD-2"


async def test_no_card_or_mandate_left_means_a_transfer(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """The card removed and nothing left to collect from (payments' last word, `method` null): the
    invoice asks for a transfer quoting its RF reference, although a mandate was once active."""
    await put_seller(client, tenant, **CLOUDY)
    account = customer(tenant, "acme", "Acme GmbH", currency="EUR", country="DE", vat_id="DE136695976").account_id
    async with runtime.transaction() as session:
        await on_mandate_changed(
            runtime, session, event(MandateChanged(mandate_id="MD-1", seller_id=tenant, account_id=account, provider="gocardless", status="active"), tenant)
        )
        for changed in (collecting(tenant, account, 0, "card", method_id="card-1", card_brand="visa", card_last4="4242"), collecting(tenant, account, 7, None)):
            await on_collecting_method_changed(runtime, session, event(changed, tenant))
    invoice_id = await issue_to_acme(runtime, tenant)
    number = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()["number"]
    text = pdf_text((await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content)
    assert printed(creditor_reference(number)) in text and "IE29 AIBK" in text
    assert "card" not in text.lower() and "direct debit" not in text


async def test_an_invoice_from_a_profile_without_bank_details_still_renders(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """Profiles saved before the bank details existed: the PDF asks for a transfer quoting the RF
    reference, the XML carries the reference and no payment means (BR-61 needs an account for a transfer)."""
    await put_seller(client, tenant, **{k: v for k, v in CLOUDY.items() if k not in ("iban", "bic", "sepa_creditor_id", "logo")})
    invoice_id = await issue_to_acme(runtime, tenant)
    number = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()["number"]
    text = pdf_text((await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))).content)
    assert printed(creditor_reference(number)) in text and "IBAN" not in text
    xml = (await client.get(f"/v1/invoices/{invoice_id}/xml", headers=tenant_headers(tenant))).content
    assert_valid(xml, "cii")
    assert etree.fromstring(xml).find(SETTLEMENT + "ram:SpecifiedTradeSettlementPaymentMeans", NS) is None


@pytest.mark.parametrize(
    "field,value",
    [
        ("iban", "IE29 AIBK 9311 5212 3456 79"),
        ("bic", "NOTABIC"),
        ("logo", "https://cloudy.example/logo.png"),
        ("logo", "data:image/png;base64," + base64.b64encode(b"GIF89a not a png").decode()),
        ("logo", "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()),
        ("sepa_creditor_id", "nope"),
    ],
)
async def test_seller_profile_refuses_bad_payment_details_and_logos(client: httpx.AsyncClient, tenant: str, field: str, value: str) -> None:
    body: dict[str, Any] = {**CLOUDY, field: value}
    r = await client.put("/v1/seller", headers=tenant_headers(tenant), json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert (await client.get("/v1/seller", headers=tenant_headers(tenant))).json()["configured"] is False


def test_credit_note_and_invoice_of_one_content_differ_only_where_they_should() -> None:
    doc = content(payment=TRANSFER)
    note = dataclasses.replace(doc, kind="credit_note", due_on=None, invoice_number=doc.number, number="CLD-CN-000001")
    ubl = etree.fromstring(ubl_xml(note))
    assert ubl.findtext("cbc:CreditNoteTypeCode", namespaces=NS) == "381"
    assert ubl.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", namespaces=NS) == doc.number
    assert ubl.find("cac:PaymentMeans", NS) is None  # nothing to pay on a credit note
    assert_valid(etree.tostring(ubl, xml_declaration=True, encoding="UTF-8"), "ubl")


async def test_openapi_declares_the_ubl_syntax(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/invoices/{invoice_id}/xml", "/v1/credit-notes/{credit_note_id}/xml"):
        (syntax,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "syntax"]
        assert syntax["in"] == "query" and syntax["schema"]["enum"] == ["cii", "ubl"] and syntax["schema"]["default"] == "cii"
        assert "application/xml" in spec["paths"][path]["get"]["responses"]["200"]["content"]


def test_a_late_line_keeps_its_own_period_and_says_why() -> None:
    """Usage of September that arrived after September closed is billed on October's invoice: the
    line's period (BG-26) is September's, with a line note (BT-127) saying why, and both syntaxes
    still pass the official rules."""
    doc = content(category="S", rate="23")
    september = DocLine(
        "l2",
        "AZ-CONS",
        "Azure consumption",
        Decimal(1),
        None,
        Decimal("10.00"),
        Decimal("10.00"),
        "S",
        Decimal(23),
        date(2026, 9, 1),
        date(2026, 9, 30),
        late=True,
    )
    tax = DocTax("S", Decimal(23), Decimal("216.00"), Decimal("49.68"), None)
    doc = dataclasses.replace(doc, lines=[*doc.lines, september], taxes=[tax], net_total=Decimal("216.00"), tax_total=Decimal("49.68"), total=Decimal("265.68"))
    cii, ubl = cii_xml(doc), ubl_xml(doc)
    assert_valid(cii, "cii")
    assert_valid(ubl, "ubl")
    items = etree.fromstring(cii).findall("rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem", NS)
    start = "ram:SpecifiedLineTradeSettlement/ram:BillingSpecifiedPeriod/ram:StartDateTime/udt:DateTimeString"
    note = "ram:AssociatedDocumentLineDocument/ram:IncludedNote/ram:Content"
    periods = [(i.findtext(start, namespaces={**NS, "udt": NS_UDT}), i.findtext(note, namespaces=NS)) for i in items]
    assert periods[0] == ("20261001", None)
    assert periods[1][0] == "20260901" and periods[1][1] is not None and "2026-09-01 to 2026-09-30" in periods[1][1]
    lines = etree.fromstring(ubl).findall("cac:InvoiceLine", NS)
    assert [(li.findtext("cac:InvoicePeriod/cbc:StartDate", namespaces=NS), li.findtext("cbc:Note", namespaces=NS) is not None) for li in lines] == [
        ("2026-10-01", False),
        ("2026-09-01", True),
    ]


async def test_late_lines_through_the_api_and_the_event(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """Rating's late flag and the line's own service dates reach the stored line, the API, the
    e-invoice and InvoiceIssued."""
    await put_seller(client, tenant, **CLOUDY)
    buyer = customer(tenant, "acme", "Acme GmbH", currency="EUR", country="DE", vat_id="DE136695976")
    late = rated("l2", "AZ-CONS", "1", "10.00", "EUR", start=date(2026, 9, 1), end=date(2026, 9, 30)).model_copy(update={"late": True, "kind": "usage"})
    async with runtime.transaction() as session:
        await record_customer(runtime, session, buyer)
        closed = period_closed(tenant, buyer.account_id, [rated("l1", "M365-BP", "10", "20.60", "EUR"), late], currency="EUR")
        invoice_id = await issue_invoice(runtime, session, closed)
    assert invoice_id is not None
    detail = (await client.get(f"/v1/invoices/{invoice_id}", headers=tenant_headers(tenant))).json()
    assert [(li["line_id"], li["late"], li["service_period_start"], li["service_period_end"]) for li in detail["lines"]] == [
        ("l1", False, "2026-10-01", "2026-10-31"),
        ("l2", True, "2026-09-01", "2026-09-30"),
    ]
    ubl = await client.get(f"/v1/invoices/{invoice_id}/xml", params={"syntax": "ubl"}, headers=tenant_headers(tenant))
    assert_valid(ubl.content, "ubl")
    notes = [li.findtext("cbc:Note", namespaces=NS) for li in etree.fromstring(ubl.content).findall("cac:InvoiceLine", NS)]
    assert notes[0] is None and notes[1] is not None and notes[1].startswith("Late")
    async with runtime.sessions() as session:
        value = (
            await session.execute(
                text("SELECT value FROM invoicing.outbox WHERE event_type = :t AND key = :k"), {"t": InvoiceIssued.event_type, "k": buyer.account_id.encode()}
            )
        ).scalar_one()
    assert [li["late"] for li in json.loads(value)["lines"]] == [False, True]


async def test_invoices_by_the_partners_customer_id(client: httpx.AsyncClient, runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """`?customer_id=` in place of `buyer_account_id`, under the caller's tenant (another tenant's
    same customer id finds nothing); both at once is a 422."""
    await put_seller(client, tenant, **CLOUDY)
    invoice_id = await issue_to_acme(runtime, tenant)
    mine = (await client.get("/v1/invoices", params={"customer_id": "acme"}, headers=tenant_headers(tenant))).json()
    assert [i["id"] for i in mine["items"]] == [invoice_id]
    assert (await client.get("/v1/invoices", params={"customer_id": "someone"}, headers=tenant_headers(tenant))).json()["items"] == []
    assert (await client.get("/v1/invoices", params={"customer_id": "acme"}, headers=tenant_headers(f"x{tenant}"))).json()["items"] == []
    both = await client.get(
        "/v1/invoices", params={"customer_id": "acme", "buyer_account_id": mine["items"][0]["buyer_account_id"]}, headers=tenant_headers(tenant)
    )
    assert (both.status_code, both.json()["code"], both.json()["field"]) == (422, "ambiguous_account", "customer_id")
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/invoices"]["get"]
    assert "customer_id" in [p["name"] for p in operation["parameters"]]
    # The list is documented field by field (InvoicePage of InvoiceSummary), not as a bare object.
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/InvoicePage")
