"""The EN 16931 e-invoice: Cross Industry Invoice XML built with drafthorse (checked against the
Factur-X EN16931 XSD) and embedded in the PDF/A-3 by factur-x at level `en16931`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import facturx
from drafthorse.models.accounting import ApplicableTradeTax
from drafthorse.models.document import Document
from drafthorse.models.note import IncludedNote
from drafthorse.models.party import TaxRegistration
from drafthorse.models.payment import PaymentTerms
from drafthorse.models.tradelines import LineItem

from billing_events.money import quantize
from invoicing.documents.content import DocContent

GUIDELINE = "urn:cen.eu:en16931:2017"
# UNCL 1001: 380 commercial invoice, 381 credit note (amounts positive on both).
TYPE_CODES = {"invoice": "380", "credit_note": "381"}
# UN/ECE Recommendation 20 units; anything else is counted in units ("one").
UNIT_CODES = {"hour": "HUR", "hours": "HUR", "day": "DAY", "month": "MON", "gb": "E34", "gigabyte": "E34"}
# VATEX codes for the categories that carry no VAT (EN 16931 BT-121).
EXEMPTION_CODES = {"AE": "VATEX-EU-AE", "O": "VATEX-EU-O"}


class DocumentUnavailable(ValueError):
    """The invoice lacks what EN 16931 requires (a country for the seller or the buyer)."""


def _party(target: Any, party: dict[str, Any], role: str) -> None:
    target.name = party["name"]
    address = party.get("address") or {}
    country = address.get("country") or party.get("country")
    if not country:
        raise DocumentUnavailable(f"the {role} has no country: an EN 16931 invoice needs one (BT-40/BT-55)")
    lines = address.get("lines") or []
    for field, value in zip(("line_one", "line_two", "line_three"), lines, strict=False):
        setattr(target.address, field, value)
    if address.get("postal_code"):
        target.address.postcode = address["postal_code"]
    if address.get("city"):
        target.address.city_name = address["city"]
    target.address.country_id = country
    if party.get("vat_id"):
        target.tax_registrations.add(TaxRegistration(id=("VA", party["vat_id"])))


def _plain(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1)) if value == value.to_integral() else value


def cii_xml(doc: DocContent) -> bytes:
    """The document as CII XML (Factur-X EN16931 profile), validated against its XSD by drafthorse."""
    x = Document()
    x.context.guideline_parameter.id = GUIDELINE
    x.header.id = doc.number
    x.header.type_code = TYPE_CODES[doc.kind]
    x.header.issue_date_time = doc.issued_on
    for text in [t.note for t in doc.taxes if t.note] + ([f"Reason: {doc.reason}"] if doc.reason else []):
        note = IncludedNote()
        note.content = text
        x.header.notes.add(note)

    _party(x.trade.agreement.seller, doc.seller, "seller")
    _party(x.trade.agreement.buyer, doc.buyer, "buyer")
    x.trade.delivery.event.occurrence = doc.period_end

    currency = doc.currency
    settlement = x.trade.settlement
    settlement.currency_code = currency
    settlement.period.start = doc.period_start
    settlement.period.end = doc.period_end
    if doc.due_on is not None:
        terms = PaymentTerms()
        terms.due = doc.due_on
        settlement.terms.add(terms)
    if doc.invoice_number:
        settlement.invoice_referenced_document.issuer_assigned_id = doc.invoice_number

    for position, line in enumerate(doc.lines, start=1):
        item = LineItem()
        item.document.line_id = str(position)
        item.product.seller_assigned_id = line.product_code
        item.product.name = line.description + (f" ({line.end_customer_name})" if line.end_customer_name else "")
        unit = UNIT_CODES.get((line.unit or "").lower(), "C62")
        # The net price times the quantity need not equal the rounded net (prorated lines): EN 16931
        # lets the line net (BT-131) be the reference, so the price is the exact unit price.
        item.agreement.net.amount = _plain(line.unit_price)
        item.delivery.billed_quantity = (_plain(line.quantity), unit)
        item.settlement.period.start = line.service_period_start
        item.settlement.period.end = line.service_period_end
        item.settlement.trade_tax.type_code = "VAT"
        item.settlement.trade_tax.category_code = line.tax_category
        item.settlement.trade_tax.rate_applicable_percent = _plain(line.tax_rate)
        item.settlement.monetary_summation.total_amount = quantize(line.net, currency)
        x.trade.items.add(item)

    for entry in doc.taxes:
        tax = ApplicableTradeTax()
        tax.type_code = "VAT"
        tax.category_code = entry.category
        tax.basis_amount = quantize(entry.taxable, currency)
        tax.calculated_amount = quantize(entry.tax, currency)
        tax.rate_applicable_percent = _plain(entry.rate)
        if entry.category in ("AE", "O", "E"):
            tax.exemption_reason = entry.note or "Exempt"
            if entry.category in EXEMPTION_CODES:
                tax.exemption_reason_code = EXEMPTION_CODES[entry.category]
        settlement.trade_tax.add(tax)

    totals = settlement.monetary_summation
    totals.line_total = quantize(doc.net_total, currency)
    totals.charge_total = Decimal(0)
    totals.allowance_total = Decimal(0)
    totals.tax_basis_total = (quantize(doc.net_total, currency), currency)
    totals.tax_total = (quantize(doc.tax_total, currency), currency)
    totals.grand_total = (quantize(doc.total, currency), currency)
    totals.prepaid_total = Decimal(0)
    totals.due_amount = quantize(doc.total, currency)
    xml: bytes = x.serialize(schema="FACTUR-X_EN16931")
    return xml


def embed(pdf: bytes, xml: bytes) -> bytes:
    """The PDF/A-3 with the XML attached as factur-x.xml, level EN 16931 (XMP metadata included).
    The XML is not checked against the XSD a second time: `cii_xml` serialises it through that
    schema already (drafthorse's `schema="FACTUR-X_EN16931"`), and factur-x's own check was a
    sixth of the embedding's CPU."""
    out: bytes = facturx.generate_from_binary(pdf, xml, flavor="factur-x", level="en16931", check_xsd=False)
    return out
