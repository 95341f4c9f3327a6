"""What a document shows, taken from a stored invoice or credit note: one shape for both renderers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from babel import Locale

from billing_events.money import open_amount
from billing_events.references import creditor_reference, printed

# How the buyer pays (EN 16931 BG-16, UNTDID 4461 codes): 58 SEPA credit transfer, 30 credit
# transfer outside SEPA, 59 SEPA direct debit, 48 bank card.
PaymentMeans = Literal["credit_transfer", "direct_debit", "card"]


@dataclass(frozen=True)
class DocPayment:
    """Payment instructions (BG-16..BG-19), decided when the document is rendered: a direct debit
    when the buyer has an active mandate, a card when one is on file, otherwise a transfer to the
    seller's account quoting the RF creditor reference (ISO 11649, the one payments matches by)."""

    means: PaymentMeans
    creditor_reference: str | None = None
    iban: str | None = None
    bic: str | None = None
    account_name: str | None = None
    mandate_reference: str | None = None
    creditor_identifier: str | None = None
    card_last4: str | None = None
    card_brand: str | None = None  # as Stripe names it: visa, mastercard, amex...

    @property
    def card_words(self) -> str:
        """The card as the buyer knows it: "Visa card ending 4242" (no brand: "card ending 4242";
        digits unknown yet: "the card on file")."""
        if not self.card_last4:
            return "the card on file"
        brand = CARD_BRANDS.get(self.card_brand or "", "")
        return f"{brand} card ending {self.card_last4}" if brand else f"card ending {self.card_last4}"

    @property
    def card_network(self) -> str:
        """UBL's CardAccount/NetworkID: the card's scheme when known."""
        return CARD_BRANDS.get(self.card_brand or "", "card")

    @property
    def iban_printed(self) -> str:
        """The IBAN in groups of four, as banks print it."""
        return printed(self.iban or "")

    @property
    def reference_printed(self) -> str:
        return printed(self.creditor_reference or "")

    @property
    def code(self) -> str:
        if self.means == "direct_debit":
            return "59"
        if self.means == "card":
            return "48"
        return "58" if self.iban and self.iban[:2] in SEPA_COUNTRIES else "30"


# Stripe's card brands (PaymentMethod card.brand) as printed; "unknown" and others print no brand.
CARD_BRANDS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "cartes_bancaires": "Cartes Bancaires",
    "eftpos_au": "eftpos",
}

# Countries of the SEPA schemes (EPC list): a transfer to an IBAN there is a SEPA credit transfer.
SEPA_COUNTRIES = frozenset("AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GI GR HR HU IE IS IT LI LT LU LV MC MT NL NO PL PT RO SE SI SK SM VA".split())


@dataclass(frozen=True)
class DocLine:
    line_id: str
    product_code: str
    description: str
    quantity: Decimal
    unit: str | None
    unit_price: Decimal
    net: Decimal
    tax_category: str
    tax_rate: Decimal
    service_period_start: date
    service_period_end: date
    end_customer_name: str | None = None
    late: bool = False

    @property
    def words(self) -> str:
        return category_words(self.tax_category)

    @property
    def note(self) -> str | None:
        """The line note (EN 16931 BT-127) of a late line: its service period is an earlier one than
        the invoice's, so the buyer is told why it is billed now."""
        if not self.late:
            return None
        return f"Late: service of {self.service_period_start.isoformat()} to {self.service_period_end.isoformat()}, received after that period was invoiced"


@dataclass(frozen=True)
class DocTax:
    category: str
    rate: Decimal
    taxable: Decimal
    tax: Decimal
    note: str | None

    @property
    def words(self) -> str:
        """The category in words ("Reverse charge"), not its code ("AE")."""
        return category_words(self.category)


if TYPE_CHECKING:  # rendering processes import this module: not the invoice service's
    from invoicing.documents.consolidated import ConsolidatedSections


@dataclass(frozen=True)
class DocContent:
    """Amounts positive; `kind` says whether they are owed (invoice) or given back (credit note)."""

    kind: Literal["invoice", "credit_note"]
    number: str
    issued_on: date
    due_on: date | None
    period_start: date
    period_end: date
    currency: str
    seller: dict[str, Any]
    buyer: dict[str, Any]
    lines: list[DocLine]
    taxes: list[DocTax]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    amount_paid: Decimal = Decimal(0)
    # The partner's consolidated invoice (seed 001), laid out in sections instead of a flat list.
    sections: ConsolidatedSections | None = None
    invoice_number: str | None = None  # the invoice a credit note corrects
    reason: str | None = None
    brand_color: str = "#1f4e79"
    flags: tuple[str, ...] = ()
    payment: DocPayment | None = None
    logo: str | None = None  # a data: URI (PNG, JPEG or SVG) from the seller profile
    schemes: tuple[str, ...] = ()  # the lines' tax schemes (reverse_charge, oss, ...), for the legal mentions

    @property
    def parties(self) -> list[tuple[str, dict[str, Any], str]]:
        """(heading, party, its country's name) of the seller and the buyer."""
        out = []
        for label, party in (("From", self.seller), ("Bill to", self.buyer)):
            country = (party.get("address") or {}).get("country") or party.get("country")
            out.append((label, party, country_name(country)))
        return out

    @property
    def tax_mentions(self) -> list[str]:
        """The legal mentions in words: each VAT breakdown's note, and what the schemes without one
        mean (art. 226 of Directive 2006/112/EC)."""
        notes = [t.note for t in self.taxes if t.note]
        if "oss" in self.schemes:
            notes.append("VAT of the customer's country of residence, declared under the One-Stop Shop scheme (Articles 369a to 369k of Directive 2006/112/EC)")
        return list(dict.fromkeys(notes))

    @property
    def title(self) -> str:
        return "Invoice" if self.kind == "invoice" else "Credit note"

    @property
    def due_amount(self) -> Decimal:
        return open_amount(self.total, self.amount_paid, Decimal(0)) if self.kind == "invoice" else Decimal(0)


def _taxes(breakdown: list[dict[str, Any]], sign: int) -> list[DocTax]:
    return [
        DocTax(t["tax_category"], Decimal(t["rate"]), sign * Decimal(t["taxable"]["amount"]), sign * Decimal(t["tax"]["amount"]), t.get("note"))
        for t in breakdown
    ]


def _line(li: Any) -> DocLine:
    return DocLine(
        line_id=li.line_id,
        product_code=li.product_code,
        description=li.description,
        quantity=li.quantity,
        unit=getattr(li, "unit", None),
        unit_price=li.unit_price,
        net=li.net,
        tax_category=li.tax_category,
        tax_rate=li.tax_rate,
        service_period_start=li.service_period_start,
        service_period_end=li.service_period_end,
        end_customer_name=getattr(li, "end_customer_name", None),
        late=getattr(li, "late", False),
    )


def payment_for(seller: Any, mandate: Any, number: str, collecting: Any = None) -> DocPayment:
    """The payment instructions of invoice `number`: what payments collects the buyer's invoices
    from (`collecting`, its CollectingMethodChanged row): the card, with its brand and last digits,
    or the direct debit under its mandate; without a card or mandate, a transfer to the seller's
    account quoting the RF reference. A buyer payments never announced a collecting method for
    (set up before it did) is collected by direct debit if `mandate` (its MandateChanged row) is
    active. `seller` is the seller profile row (None when never saved)."""
    creditor_identifier = getattr(seller, "sepa_creditor_id", None)
    if collecting is not None and collecting.method == "card":
        return DocPayment(means="card", card_last4=collecting.card_last4, card_brand=collecting.card_brand)
    if collecting is not None and collecting.method == "direct_debit":
        reference = collecting.mandate_id or (mandate.mandate_id if mandate is not None else None)
        return DocPayment(means="direct_debit", mandate_reference=reference, creditor_identifier=creditor_identifier)
    if collecting is None and mandate is not None and mandate.status == "active":
        return DocPayment(means="direct_debit", mandate_reference=mandate.mandate_id, creditor_identifier=creditor_identifier)
    return DocPayment(
        means="credit_transfer",
        creditor_reference=creditor_reference(number),
        iban=getattr(seller, "iban", None),
        bic=getattr(seller, "bic", None),
        account_name=getattr(seller, "name", None),
    )


def _schemes(lines: list[Any]) -> tuple[str, ...]:
    return tuple(sorted({s for s in (getattr(li, "tax_scheme", None) for li in lines) if s}))


class _Amounts(TypedDict):
    lines: list[DocLine]
    taxes: list[DocTax]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    schemes: tuple[str, ...]


def _amounts(row: Any, lines: list[Any]) -> _Amounts:
    """What an invoice and a credit note print alike from their own row: the lines, the VAT
    breakdown, the totals and the lines' tax schemes."""
    return _Amounts(
        lines=[_line(li) for li in lines],
        taxes=_taxes(row.tax_breakdown, 1),
        net_total=row.net_total,
        tax_total=row.tax_total,
        total=row.total,
        schemes=_schemes(lines),
    )


def invoice_content(row: Any, lines: list[Any], brand_color: str | None, *, payment: DocPayment | None = None, logo: str | None = None) -> DocContent:
    return DocContent(
        kind="invoice",
        number=row.number,
        issued_on=row.issued_on,
        due_on=row.due_on,
        period_start=row.period_start,
        period_end=row.period_end,
        currency=row.currency,
        seller=row.seller,
        buyer=row.buyer,
        **_amounts(row, lines),
        # The amount due printed is the invoice's total: payments after issue do not change the document.
        brand_color=brand_color or DocContent.brand_color,
        flags=tuple(row.flags),
        payment=payment,
        logo=logo,
    )


def credit_note_content(row: Any, lines: list[Any], invoice: Any, brand_color: str | None, *, logo: str | None = None) -> DocContent:
    return DocContent(
        kind="credit_note",
        number=row.number,
        issued_on=row.issued_on,
        due_on=None,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        currency=row.currency,
        seller=invoice.seller,
        buyer=invoice.buyer,
        **_amounts(row, lines),
        invoice_number=invoice.number,
        reason=row.reason,
        brand_color=brand_color or DocContent.brand_color,
        logo=logo,
    )


# What each EN 16931 VAT category (UNCL 5305) is called on the PDF: a reader need not know the codes.
CATEGORY_WORDS = {
    "S": "VAT",
    "Z": "Zero-rated",
    "E": "Exempt from VAT",
    "AE": "Reverse charge",
    "O": "Not subject to VAT",
    "K": "Intra-community supply",
    "G": "Export outside the EU",
}


def category_words(category: str) -> str:
    return CATEGORY_WORDS.get(category, category)


def country_name(code: str | None) -> str:
    """ "Ireland" for IE; the code itself when ISO 3166 does not know it."""
    if not code:
        return ""
    name: str = Locale("en").territories.get(code, code)
    return name
