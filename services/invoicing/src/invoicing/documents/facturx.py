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
from drafthorse.models.payment import PaymentMeans, PaymentTerms
from drafthorse.models.tradelines import LineItem

from billing_events.money import quantize
from invoicing.documents.content import DocContent, DocPayment

GUIDELINE = "urn:cen.eu:en16931:2017"
# UNCL 1001: 380 commercial invoice, 381 credit note (amounts positive on both).
TYPE_CODES = {"invoice": "380", "credit_note": "381"}
# UN/ECE Recommendation 20 units; anything else is counted in units ("one").
UNIT_CODES = {"hour": "HUR", "hours": "HUR", "day": "DAY", "month": "MON", "gb": "E34", "gigabyte": "E34"}
# VATEX codes for the categories that carry no VAT (EN 16931 BT-121).
EXEMPTION_CODES = {"AE": "VATEX-EU-AE", "O": "VATEX-EU-O"}


class DocumentUnavailable(ValueError):
    """The invoice lacks what EN 16931 requires (a country for the seller or the buyer)."""


def vat_ids_allowed(doc: DocContent) -> bool:
    """BR-O-02: an invoice with a line not subject to VAT (category O) carries no VAT identifier
    of the seller (BT-31) or the buyer (BT-48); the seller's number then goes as its tax
    registration (BT-32, scheme FC)."""
    return "O" not in {line.tax_category for line in doc.lines}


def party_country(party: dict[str, Any], role: str) -> str:
    address = party.get("address") or {}
    country = address.get("country") or party.get("country")
    if not country:
        raise DocumentUnavailable(f"the {role} has no country: an EN 16931 invoice needs one (BT-40/BT-55)")
    return str(country)


def _party(target: Any, party: dict[str, Any], role: str, vat_allowed: bool) -> None:
    target.name = party["name"]
    address = party.get("address") or {}
    country = party_country(party, role)
    lines = address.get("lines") or []
    for field, value in zip(("line_one", "line_two", "line_three"), lines, strict=False):
        setattr(target.address, field, value)
    if address.get("postal_code"):
        target.address.postcode = address["postal_code"]
    if address.get("city"):
        target.address.city_name = address["city"]
    if address.get("region"):
        target.address.country_subdivision = address["region"]
    target.address.country_id = country
    if party.get("email"):
        target.electronic_address.uri_ID = ("EM", party["email"])  # BT-34/BT-49, EAS code EM
    if role == "seller" and party.get("registration"):
        target.legal_organization.id = ("", party["registration"])  # BT-30
    if party.get("vat_id"):
        if vat_allowed:
            target.tax_registrations.add(TaxRegistration(id=("VA", party["vat_id"])))
        elif role == "seller":
            target.tax_registrations.add(TaxRegistration(id=("FC", party["vat_id"])))
    if role == "seller" and not party.get("registration") and not (party.get("vat_id") and vat_allowed):
        # BR-CO-26: a seller identifier (BT-29) when neither a registration nor a VAT id is printed.
        target.id = party.get("account_id") or party["name"]


def terms_text(doc: DocContent) -> str:
    """BT-20: the payment terms in words."""
    payment = doc.payment
    if doc.due_on is None:
        return "Nothing to pay: credit note"
    if payment is not None and payment.means == "direct_debit":
        return f"Collected by SEPA direct debit on {doc.due_on.isoformat()}"
    if payment is not None and payment.means == "card":
        return f"Paid by {payment.card_words} on {doc.issued_on.isoformat()}: the card on file is charged on the invoice date"
    return f"Due on {doc.due_on.isoformat()}" + (f", by transfer quoting {payment.creditor_reference}" if payment and payment.creditor_reference else "")


def _payment_means(payment: DocPayment) -> PaymentMeans:
    means = PaymentMeans()
    means.type_code = payment.code
    if payment.means == "credit_transfer":
        if payment.iban:
            means.payee_account.iban = payment.iban
        if payment.account_name:
            means.payee_account.account_name = payment.account_name
        if payment.bic:
            means.payee_institution.bic = payment.bic
    elif payment.means == "card" and payment.card_last4:
        means.financial_card.id = payment.card_last4  # BT-87: the last digits only
    return means


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

    vat_allowed = vat_ids_allowed(doc)
    _party(x.trade.agreement.seller, doc.seller, "seller", vat_allowed)
    _party(x.trade.agreement.buyer, doc.buyer, "buyer", vat_allowed)
    x.trade.delivery.event.occurrence = doc.period_end

    currency = doc.currency
    settlement = x.trade.settlement
    settlement.currency_code = currency
    settlement.period.start = doc.period_start
    settlement.period.end = doc.period_end
    payment = doc.payment
    if payment is not None and doc.kind == "invoice":
        if payment.creditor_reference:
            settlement.payment_reference = payment.creditor_reference  # BT-83
        if payment.creditor_identifier:
            settlement.creditor_reference_id = payment.creditor_identifier  # BT-90
        if payment.means != "credit_transfer" or payment.iban:
            settlement.payment_means.add(_payment_means(payment))
    terms = PaymentTerms()
    terms.description = terms_text(doc)
    if doc.due_on is not None:
        terms.due = doc.due_on
    if payment is not None and payment.mandate_reference and doc.kind == "invoice":
        terms.debit_mandate_id = payment.mandate_reference  # BT-89
    settlement.terms.add(terms)
    if doc.invoice_number:
        settlement.invoice_referenced_document.issuer_assigned_id = doc.invoice_number

    for position, line in enumerate(doc.lines, start=1):
        item = LineItem()
        item.document.line_id = str(position)
        if line.note:
            line_note = IncludedNote()
            line_note.content = line.note
            item.document.notes.add(line_note)
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
        if line.tax_category != "O":  # BR-O-05: a line not subject to VAT has no rate
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
    # CII-DT-031: only the VAT total (BT-110) carries a currencyID; the other amounts are in the
    # invoice currency (BT-5).
    totals.tax_basis_total = (quantize(doc.net_total, currency), None)
    totals.tax_total = (quantize(doc.tax_total, currency), currency)
    totals.grand_total = (quantize(doc.total, currency), None)
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
