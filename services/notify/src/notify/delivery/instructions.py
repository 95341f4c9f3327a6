"""What a mail about money tells its reader to do next (BILLING-RULES §9): how much, by when, how to
pay (the hosted invoice, the portal, a bank transfer quoting the invoice's RF reference) and whom to
ask. Built from the event, the invoice notify remembers and the seller's brand; the RF reference is
`billing_events.references`, the one payments matches incoming transfers by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from billing_events import Money
from billing_events.references import creditor_reference, printed
from notify.brand.service import EffectiveBrand


@dataclass(frozen=True)
class HowToPay:
    amount: Money | None
    due_on: date | None
    invoice_number: str | None
    document_url: str | None
    portal_url: str | None
    bank_account_name: str | None
    iban: str | None
    bic: str | None
    reference: str | None

    @property
    def bank_transfer(self) -> bool:
        return self.iban is not None


def is_public(url: str | None) -> bool:
    """A link a recipient can open from a mailbox: absolute, not a path in invoicing's API."""
    return bool(url) and str(url).startswith(("https://", "http://"))


def how_to_pay(brand: EffectiveBrand, *, amount: Money | None, due_on: date | None, invoice_number: str | None, document_url: str | None) -> HowToPay:
    """The payment instructions of one invoice. `invoice_number` is None when notify knows only the
    invoice's id: a reference made from an id would match nothing, so none is given then."""
    return HowToPay(
        amount=amount,
        due_on=due_on,
        invoice_number=invoice_number,
        document_url=document_url if is_public(document_url) else None,
        portal_url=brand.portal_url,
        bank_account_name=brand.bank_account_name or brand.sender_name,
        iban=brand.iban_printed,
        bic=brand.bic,
        reference=printed(creditor_reference(invoice_number)) if invoice_number and brand.iban else None,
    )


DOCUMENT_LABELS = {
    "pdf": "the invoice (PDF)",
    "cii_xml": "the e-invoice (XML)",
    "ubl_xml": "the e-invoice (UBL XML)",
    "xml": "the e-invoice (XML)",
    "xlsx": "the spreadsheet (Excel)",
    "json": "the report (JSON)",
    "project_work_statement": "the statement (PDF)",
}

# EN 16931 VAT category codes (UNCL 5305) in words: a reader does not know "AE".
TAX_CATEGORY_WORDS = {
    "S": "VAT",
    "Z": "VAT at zero rate",
    "E": "Exempt from VAT",
    "AE": "Reverse charge",
    "O": "Not subject to VAT",
    "K": "Intra-community supply, VAT exempt",
    "G": "Export outside the EU, VAT exempt",
}


def document_label(kind: str) -> str:
    return DOCUMENT_LABELS.get(kind, f"the {kind.replace('_', ' ')}")


def tax_words(category: str) -> str:
    return TAX_CATEGORY_WORDS.get(category, "VAT")
