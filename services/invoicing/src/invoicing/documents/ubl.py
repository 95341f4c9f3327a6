"""The EN 16931 e-invoice in the other syntax the standard binds: OASIS UBL 2.1, as Peppol BIS
Billing 3.0 declares it (its CustomizationID and ProfileID), for accounting tools that take UBL.
The same content as the CII (invoicing.documents.facturx): parties with postal addresses and VAT
ids, payment means and terms, lines, VAT breakdown and totals. Written with lxml in the UBL 2.1
schema's element order; an invoice is an `Invoice`, a credit note a `CreditNote` (amounts positive)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lxml import etree

from billing_events.money import quantize
from invoicing.documents.content import DocContent, DocPayment
from invoicing.documents.facturx import EXEMPTION_CODES, TYPE_CODES, UNIT_CODES, party_country, terms_text, vat_ids_allowed

CUSTOMIZATION = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
ROOTS = {
    "invoice": ("urn:oasis:names:specification:ubl:schema:xsd:Invoice-2", "Invoice"),
    "credit_note": ("urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2", "CreditNote"),
}


def _plain(value: Decimal) -> str:
    return format(value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize(), "f")


class _Writer:
    def __init__(self, currency: str) -> None:
        self.currency = currency

    def cbc(self, parent: etree._Element, tag: str, text: object, **attrs: str) -> etree._Element:
        node = etree.SubElement(parent, f"{{{CBC}}}{tag}", attrs)
        node.text = str(text)
        return node

    def cac(self, parent: etree._Element, tag: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{CAC}}}{tag}")

    def amount(self, parent: etree._Element, tag: str, value: Decimal) -> etree._Element:
        return self.cbc(parent, tag, format(quantize(value, self.currency), "f"), currencyID=self.currency)


def _party(w: _Writer, parent: etree._Element, party: dict[str, Any], role: str, vat_allowed: bool, creditor_id: str | None) -> None:
    node = w.cac(w.cac(parent, "AccountingSupplierParty" if role == "seller" else "AccountingCustomerParty"), "Party")
    country = party_country(party, role)
    if party.get("email"):
        w.cbc(node, "EndpointID", party["email"], schemeID="EM")  # BT-34/BT-49
    if creditor_id:
        w.cbc(w.cac(node, "PartyIdentification"), "ID", creditor_id, schemeID="SEPA")  # BT-90
    elif role == "seller" and not party.get("registration") and not (party.get("vat_id") and vat_allowed):
        w.cbc(w.cac(node, "PartyIdentification"), "ID", party.get("account_id") or party["name"])  # BT-29 (BR-CO-26)
    w.cbc(w.cac(node, "PartyName"), "Name", party["name"])
    address = party.get("address") or {}
    postal = w.cac(node, "PostalAddress")
    lines = list(address.get("lines") or [])
    if lines:
        w.cbc(postal, "StreetName", lines[0])
    if len(lines) > 1:
        w.cbc(postal, "AdditionalStreetName", lines[1])
    if address.get("city"):
        w.cbc(postal, "CityName", address["city"])
    if address.get("postal_code"):
        w.cbc(postal, "PostalZone", address["postal_code"])
    if address.get("region"):
        w.cbc(postal, "CountrySubentity", address["region"])
    if len(lines) > 2:
        w.cbc(w.cac(postal, "AddressLine"), "Line", lines[2])
    w.cbc(w.cac(postal, "Country"), "IdentificationCode", country)
    if party.get("vat_id") and (vat_allowed or role == "seller"):
        scheme = w.cac(node, "PartyTaxScheme")
        w.cbc(scheme, "CompanyID", party["vat_id"])
        # BR-O-02: no VAT identifier on an invoice not subject to VAT; the seller's number is then its tax registration (BT-32).
        w.cbc(w.cac(scheme, "TaxScheme"), "ID", "VAT" if vat_allowed else "TAX")
    legal = w.cac(node, "PartyLegalEntity")
    w.cbc(legal, "RegistrationName", party["name"])
    if role == "seller" and party.get("registration"):
        w.cbc(legal, "CompanyID", party["registration"])  # BT-30


def _payment_means(w: _Writer, root: etree._Element, payment: DocPayment) -> None:
    means = w.cac(root, "PaymentMeans")
    w.cbc(means, "PaymentMeansCode", payment.code)
    if payment.creditor_reference:
        w.cbc(means, "PaymentID", payment.creditor_reference)  # BT-83
    if payment.means == "card" and payment.card_last4:
        card = w.cac(means, "CardAccount")
        w.cbc(card, "PrimaryAccountNumberID", payment.card_last4)  # BT-87: the last digits only
        w.cbc(card, "NetworkID", payment.card_network)
    if payment.means == "credit_transfer" and payment.iban:
        account = w.cac(means, "PayeeFinancialAccount")
        w.cbc(account, "ID", payment.iban)
        if payment.account_name:
            w.cbc(account, "Name", payment.account_name)
        if payment.bic:
            w.cbc(w.cac(account, "FinancialInstitutionBranch"), "ID", payment.bic)
    if payment.means == "direct_debit" and payment.mandate_reference:
        w.cbc(w.cac(means, "PaymentMandate"), "ID", payment.mandate_reference)  # BT-89


def _tax_category(w: _Writer, parent: etree._Element, tag: str, category: str, rate: Decimal, note: str | None = None) -> None:
    node = w.cac(parent, tag)
    w.cbc(node, "ID", category)
    if category != "O":  # BR-O-05/BR-O-10: no rate on what is not subject to VAT
        w.cbc(node, "Percent", _plain(rate))
    if tag == "TaxCategory" and category in ("AE", "O", "E"):
        if category in EXEMPTION_CODES:
            w.cbc(node, "TaxExemptionReasonCode", EXEMPTION_CODES[category])
        w.cbc(node, "TaxExemptionReason", note or "Exempt")
    w.cbc(w.cac(node, "TaxScheme"), "ID", "VAT")


def ubl_xml(doc: DocContent) -> bytes:
    """The document as UBL 2.1 (Peppol BIS Billing 3.0 customization of EN 16931)."""
    namespace, root_tag = ROOTS[doc.kind]
    root = etree.Element(f"{{{namespace}}}{root_tag}", nsmap={None: namespace, "cac": CAC, "cbc": CBC})
    w = _Writer(doc.currency)
    w.cbc(root, "CustomizationID", CUSTOMIZATION)
    w.cbc(root, "ProfileID", PROFILE)
    w.cbc(root, "ID", doc.number)
    w.cbc(root, "IssueDate", doc.issued_on.isoformat())
    if doc.kind == "invoice":
        if doc.due_on is not None:
            w.cbc(root, "DueDate", doc.due_on.isoformat())
        w.cbc(root, "InvoiceTypeCode", TYPE_CODES["invoice"])
    else:
        w.cbc(root, "CreditNoteTypeCode", TYPE_CODES["credit_note"])
    for text in [t.note for t in doc.taxes if t.note] + ([f"Reason: {doc.reason}"] if doc.reason else []):
        w.cbc(root, "Note", text)
    w.cbc(root, "DocumentCurrencyCode", doc.currency)
    w.cbc(root, "BuyerReference", doc.buyer.get("account_id") or doc.buyer["name"])  # BT-10 (Peppol asks for it or an order)
    period = w.cac(root, "InvoicePeriod")
    w.cbc(period, "StartDate", doc.period_start.isoformat())
    w.cbc(period, "EndDate", doc.period_end.isoformat())
    if doc.invoice_number:
        w.cbc(w.cac(w.cac(root, "BillingReference"), "InvoiceDocumentReference"), "ID", doc.invoice_number)  # BT-25

    vat_allowed = vat_ids_allowed(doc)
    payment = doc.payment if doc.kind == "invoice" else None
    _party(w, root, doc.seller, "seller", vat_allowed, payment.creditor_identifier if payment else None)
    _party(w, root, doc.buyer, "buyer", vat_allowed, None)
    w.cbc(w.cac(root, "Delivery"), "ActualDeliveryDate", doc.period_end.isoformat())
    if payment is not None and (payment.means != "credit_transfer" or payment.iban):
        _payment_means(w, root, payment)
    w.cbc(w.cac(root, "PaymentTerms"), "Note", terms_text(doc))

    tax_total = w.cac(root, "TaxTotal")
    w.amount(tax_total, "TaxAmount", doc.tax_total)
    for entry in doc.taxes:
        sub = w.cac(tax_total, "TaxSubtotal")
        w.amount(sub, "TaxableAmount", entry.taxable)
        w.amount(sub, "TaxAmount", entry.tax)
        _tax_category(w, sub, "TaxCategory", entry.category, entry.rate, entry.note)

    totals = w.cac(root, "LegalMonetaryTotal")
    w.amount(totals, "LineExtensionAmount", doc.net_total)
    w.amount(totals, "TaxExclusiveAmount", doc.net_total)
    w.amount(totals, "TaxInclusiveAmount", doc.total)
    w.amount(totals, "PayableAmount", doc.total)

    line_tag, quantity_tag = ("InvoiceLine", "InvoicedQuantity") if doc.kind == "invoice" else ("CreditNoteLine", "CreditedQuantity")
    for position, line in enumerate(doc.lines, start=1):
        node = w.cac(root, line_tag)
        w.cbc(node, "ID", str(position))
        if line.note:
            w.cbc(node, "Note", line.note)  # BT-127, before the quantity in the schema's order
        w.cbc(node, quantity_tag, _plain(line.quantity), unitCode=UNIT_CODES.get((line.unit or "").lower(), "C62"))
        w.amount(node, "LineExtensionAmount", line.net)
        line_period = w.cac(node, "InvoicePeriod")
        w.cbc(line_period, "StartDate", line.service_period_start.isoformat())
        w.cbc(line_period, "EndDate", line.service_period_end.isoformat())
        item = w.cac(node, "Item")
        w.cbc(item, "Name", line.description + (f" ({line.end_customer_name})" if line.end_customer_name else ""))
        w.cbc(w.cac(item, "SellersItemIdentification"), "ID", line.product_code)
        _tax_category(w, item, "ClassifiedTaxCategory", line.tax_category, line.tax_rate)
        price = w.cac(node, "Price")
        # As in the CII: the exact unit price; the rounded line net (BT-131) is the reference.
        w.cbc(price, "PriceAmount", _plain(line.unit_price), currencyID=doc.currency)
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return xml
