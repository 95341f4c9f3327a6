"""Events emitted by invoicing: issued invoices, credit notes, settlement."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from billing_events import topics
from billing_events.envelope import EventData, Part
from billing_events.events.ingest import Address
from billing_events.money import DecimalStr, Money

# Where the money goes back when a credit note takes off more than is still unpaid: refunded the
# way it came (card, direct debit, a SEPA credit transfer for a bank transfer), or kept as the
# buyer's balance, which its next invoices from the same seller consume before collecting.
RefundDestination = Literal["original_method", "buyer_balance"]


class Party(Part):
    account_id: str
    name: str
    country: str | None = None
    vat_id: str | None = None
    email: str | None = None
    address: Address | None = None
    business: bool | None = Field(default=None, description="A business (true) or a consumer (false); null when not known.")
    registration: str | None = Field(default=None, description="Company registration number (EN 16931 BT-30), sellers only.")


class InvoiceLine(Part):
    line_id: str
    product_code: str
    description: str
    service_period_start: date
    service_period_end: date
    quantity: DecimalStr
    unit_price: Money
    net: Money
    tax_rate: DecimalStr
    tax_category: str
    end_customer_id: str | None = None
    category: str | None = Field(default=None, description="The product category (seed 001: communications, security, ...).")
    end_customer_name: str | None = None
    tax_scheme: str | None = Field(
        default=None,
        description="Why this VAT: domestic, reverse_charge, oss, outside_scope, exempt_buyer, exempt_product, zero_rated, not_assessed.",
    )
    tax_country: str | None = Field(default=None, description="The country whose VAT applies (ISO 3166 alpha-2), when any does.")
    late: bool = Field(
        default=False,
        description="Usage (or a term) of an earlier period that arrived after that period closed; "
        "service_period_start/end are that period's, not the invoice's.",
    )


class TaxBreakdown(Part):
    tax_category: str
    rate: DecimalStr
    taxable: Money
    tax: Money
    note: str | None = Field(default=None, description="The legal mention or exemption reason (EN 16931 BT-120), e.g. the reverse charge.")


class DocumentLink(Part):
    kind: str
    url: str = Field(description="The document in invoicing's API, relative to invoicing: fetched with the seller's API key.")
    shared_url: str | None = Field(
        default=None,
        description="A capability link to this one document, fetched without an API key (whoever holds it can read the document): "
        "absolute when invoicing knows its public address, else relative to invoicing.",
    )


class InvoiceIssued(EventData):
    event_type: ClassVar[str] = "billing.invoice.issued.v1"
    topic: ClassVar[topics.Topic] = topics.INVOICES

    invoice_id: str
    number: str
    seller: Party
    buyer: Party
    issued_on: date
    due_on: date
    period_start: date
    period_end: date
    currency: str
    lines: list[InvoiceLine]
    tax_breakdown: list[TaxBreakdown]
    net_total: Money
    tax_total: Money
    total: Money
    documents: list[DocumentLink] = Field(
        default_factory=list,
        description="The invoice's documents, by kind: pdf (PDF/A-3 with the Factur-X XML inside), cii_xml (EN 16931 CII, Factur-X) and "
        "ubl_xml (UBL 2.1, Peppol BIS Billing 3.0), each with its shared link; consumers ignore kinds they do not know.",
    )
    tier: str | None = Field(default=None, description="retail (a partner to its customer) or wholesale (the distributor to a partner).")
    flags: list[str] = Field(default_factory=list, description="Warnings a person should see, e.g. buyer_vat_id_invalid (taxed as a consumer).")

    def partition_key(self) -> str:
        return self.buyer.account_id


class CreditNoteIssued(EventData):
    event_type: ClassVar[str] = "billing.credit_note.issued.v1"
    topic: ClassVar[topics.Topic] = topics.INVOICES

    credit_note_id: str
    number: str
    invoice_id: str
    invoice_number: str
    seller_id: str
    buyer_account_id: str
    issued_on: date
    currency: str
    net_total: Money
    tax_total: Money
    total: Money
    reason: str | None = None
    lines: list[InvoiceLine] = Field(default_factory=list, description="The credited lines, amounts negative.")
    tax_breakdown: list[TaxBreakdown] = Field(default_factory=list)
    refund_to: RefundDestination | None = Field(
        default=None,
        description="The seller's choice for money already paid beyond what the invoice asks after this credit note; "
        "each refund made for it is a PaymentRefunded carrying this credit_note_id. Null: original_method.",
    )

    def partition_key(self) -> str:
        return self.buyer_account_id


class InvoiceSettled(EventData):
    event_type: ClassVar[str] = "billing.invoice.settled.v1"
    topic: ClassVar[topics.Topic] = topics.INVOICES

    invoice_id: str
    number: str
    seller_id: str
    buyer_account_id: str
    settled_on: date
    amount_paid: Money

    def partition_key(self) -> str:
        return self.buyer_account_id


class ComparisonReportReady(EventData):
    """The invoice comparison report of seed 001 (this period against the last, per end customer and
    product) is ready: notify sends it to the partner with its spreadsheet. Made from the period's
    rated charges on the first business day after the period (`basis` `rated_charges`, the invoice
    still to come: `invoice_number` is then null and `invoice_id` the id the invoice will have), or
    with the invoice when the bill run came first (`basis` `invoice`)."""

    event_type: ClassVar[str] = "billing.comparison_report.ready.v1"
    topic: ClassVar[topics.Topic] = topics.INVOICES

    report_id: str
    seller_id: str
    buyer_account_id: str
    invoice_id: str
    invoice_number: str | None = Field(default=None, description="The number of the invoice the report is for, as the buyer knows it.")
    previous_invoice_id: str | None = None
    period_start: date
    period_end: date
    currency: str
    this_period_total: Money = Field(description="Σ line nets of this period's invoice.")
    last_period_total: Money = Field(description="Σ line nets of the previous period's invoice (0 when there was none).")
    difference: Money
    lines_added: int
    lines_removed: int
    lines_changed: int
    documents: list[DocumentLink] = Field(default_factory=list, description="The report as JSON and as an XLSX spreadsheet.")
    basis: Literal["invoice", "rated_charges"] = Field(
        default="invoice", description="invoice: the issued invoice's lines; rated_charges: the period's charges as rated before its bill run."
    )
    invoice_expected_on: date | None = Field(default=None, description="With basis rated_charges: the day the invoice is due to be issued.")
    revised: bool = Field(default=False, description="The invoice differs from the report sent ahead of it: this is the report as invoiced.")
    buyer_name: str | None = Field(default=None, description="The buyer (the partner) by name, for the subject and greeting.")

    def partition_key(self) -> str:
        return self.buyer_account_id


class ProjectWorkStatementIssued(EventData):
    """A numbered, informational project-work statement (seed 001): what was done, how long it took
    and what it will cost; no payment is due, the charges come on the next regular invoice."""

    event_type: ClassVar[str] = "billing.project_work_statement.issued.v1"
    topic: ClassVar[topics.Topic] = topics.INVOICES

    statement_id: str
    number: str = Field(description="Gapless per seller, in its own series ({prefix}-PW-{seq:06d}).")
    entry_id: str
    seller: Party
    buyer: Party
    issued_on: date
    end_customer_id: str
    end_customer_name: str | None = None
    product_code: str
    description: str
    performed_on: date
    quantity: DecimalStr
    unit_price: Money
    amount: Money = Field(description="Net, rounded once to the currency's minor unit; no VAT is charged on a statement.")
    billed_with_period_start: date
    billed_with_period_end: date
    documents: list[DocumentLink] = Field(default_factory=list, description="The statement as a PDF (with its shared link).")

    def partition_key(self) -> str:
        return self.buyer.account_id


class SellerPaymentAccountChanged(EventData):
    """The bank account a seller's buyers pay into by transfer, as its invoicing profile now has it
    (`PUT /v1/seller` on invoicing, the one place it is kept): sent when it changes, and once for
    every profile that had one when the event was introduced. The PDF, the e-invoice and the
    emails' "how to pay" all show this account; `updated_at` orders the versions (latest wins)."""

    event_type: ClassVar[str] = "billing.seller.payment_account_changed.v1"
    topic: ClassVar[topics.Topic] = topics.INVOICES

    seller_id: str
    account_name: str | None = Field(default=None, description="The account holder (BT-85); the seller's name when not set.")
    iban: str | None = Field(default=None, description="BT-84, compact (no spaces); null: the seller takes no bank transfers.")
    bic: str | None = Field(default=None, description="BT-86.")
    updated_at: AwareDatetime

    def partition_key(self) -> str:
        return self.seller_id
