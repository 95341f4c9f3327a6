"""Every table of invoicing, imported in one place for the app and for Alembic."""

from invoicing.buyer.models import Buyer, BuyerCollectingMethod, BuyerMandate
from invoicing.comparison.models import ComparisonReport
from invoicing.creditnote.models import CreditNote, CreditNoteLine
from invoicing.documents.models import DocumentShare, RenderedDocument
from invoicing.invoice.models import Invoice, InvoiceLine, Payment, Refund
from invoicing.numbering.models import CreditNoteNumberCounter, InvoiceNumberCounter
from invoicing.projectwork.models import ProjectWorkStatement, ProjectWorkStatementCounter
from invoicing.seller.models import SellerSettings
from invoicing.tax.models import VatCheck

__all__ = [
    "Buyer",
    "BuyerCollectingMethod",
    "BuyerMandate",
    "ComparisonReport",
    "CreditNote",
    "CreditNoteLine",
    "CreditNoteNumberCounter",
    "DocumentShare",
    "Invoice",
    "InvoiceLine",
    "InvoiceNumberCounter",
    "Payment",
    "ProjectWorkStatement",
    "ProjectWorkStatementCounter",
    "Refund",
    "RenderedDocument",
    "SellerSettings",
    "VatCheck",
]
