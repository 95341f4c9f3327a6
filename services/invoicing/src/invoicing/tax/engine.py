"""Tax determination per invoice line (BILLING-RULES §5; Council Directive 2006/112/EC).

The place of supply of electronically supplied and telecommunication services decides whose VAT
applies: to a business, where the business is established (art. 44), the buyer accounting for it
by reverse charge (art. 196); to a consumer, where the consumer lives (art. 58), declared through
the One-Stop Shop (arts. 369a–369k). The United Kingdom follows the same shape with its own rate.
Categories are the EN 16931 VAT category codes (UNCL 5305) so the Factur-X needs no mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from billing_runtime.errors import Unprocessable
from invoicing.tax.rates import EU_MEMBER_STATES, RateNotFound, RateTable, default_rate_table


class Category(StrEnum):
    STANDARD = "S"
    ZERO = "Z"
    EXEMPT = "E"
    REVERSE_CHARGE = "AE"
    OUTSIDE_SCOPE = "O"


class Scheme(StrEnum):
    DOMESTIC = "domestic"
    REVERSE_CHARGE = "reverse_charge"
    OSS = "oss"
    OUTSIDE_SCOPE = "outside_scope"
    EXEMPT_BUYER = "exempt_buyer"
    EXEMPT_PRODUCT = "exempt_product"
    ZERO_RATED = "zero_rated"
    NOT_ASSESSED = "not_assessed"


# Legal mentions printed on the invoice (art. 226(11) and (11a) of the Directive require the
# exemption reference and "Reverse charge" where they apply).
NOTES: dict[Scheme, str] = {
    Scheme.REVERSE_CHARGE: "Reverse charge: VAT to be accounted for by the recipient, Article 196 of Council Directive 2006/112/EC",
    Scheme.OUTSIDE_SCOPE: "Not subject to VAT in the supplier's country: place of supply outside it (Articles 44 and 59 of Directive 2006/112/EC)",
    Scheme.EXEMPT_BUYER: "VAT exempt supply to an exempt recipient (Article 151 of Directive 2006/112/EC)",
    Scheme.EXEMPT_PRODUCT: "VAT exempt supply (Articles 132 to 135 of Directive 2006/112/EC)",
    Scheme.NOT_ASSESSED: "VAT not assessed: the seller has no country of establishment on file",
}
UK_REVERSE_CHARGE = "Outside the scope of UK VAT: the customer accounts for any VAT due (reverse charge)"


class TaxError(Unprocessable, ValueError):
    """The line's tax cannot be determined from what we know; the invoice must not be issued."""

    code = "tax_undeterminable"


class BuyerCountryMissing(TaxError):
    code = "buyer_country_missing"


class UnsupportedTaxCategory(TaxError):
    code = "unsupported_tax_category"


ProductCategory = Literal["standard", "zero", "exempt"]
_PRODUCT_CATEGORIES: dict[str | None, ProductCategory] = {
    None: "standard",
    "standard": "standard",
    "S": "standard",
    "zero": "zero",
    "Z": "zero",
    "exempt": "exempt",
    "E": "exempt",
}


@dataclass(frozen=True)
class SellerTax:
    country: str | None
    vat_id: str | None = None


@dataclass(frozen=True)
class BuyerTax:
    country: str | None
    business: bool = True
    # True only when the VAT id passed its checks (checksum, and VIES when it is asked).
    vat_id_valid: bool = False
    tax_exempt: bool = False


@dataclass(frozen=True)
class TaxDecision:
    category: Category
    rate: Decimal
    scheme: Scheme
    country: str | None
    note: str | None = None


def product_category(tax_category: str | None) -> ProductCategory:
    try:
        return _PRODUCT_CATEGORIES[tax_category]
    except KeyError:
        raise UnsupportedTaxCategory(f"product tax category {tax_category!r} (known: standard, zero, exempt)") from None


def _vat_area(country: str) -> str | None:
    if country in EU_MEMBER_STATES:
        return "EU"
    if country == "GB":
        return "GB"
    return None


def determine_tax(seller: SellerTax, buyer: BuyerTax, tax_category: str | None, on: date, rates: RateTable | None = None) -> TaxDecision:
    """The VAT category, rate and scheme of one line supplied on `on` (the service period's last day
    in arrears, its first in advance)."""
    rates = rates or default_rate_table()
    category = product_category(tax_category)
    if seller.country is None:
        return TaxDecision(Category.OUTSIDE_SCOPE, Decimal(0), Scheme.NOT_ASSESSED, None, NOTES[Scheme.NOT_ASSESSED])
    seller_area = _vat_area(seller.country)
    if seller_area is None:
        # Neither EU nor UK: outside the scope of the VAT systems this service determines.
        return TaxDecision(Category.OUTSIDE_SCOPE, Decimal(0), Scheme.OUTSIDE_SCOPE, None, NOTES[Scheme.OUTSIDE_SCOPE])
    if buyer.country is None:
        raise BuyerCountryMissing(f"a seller in {seller.country} cannot determine VAT for a buyer without a country")
    buyer_area = _vat_area(buyer.country)
    domestic = buyer.country == seller.country
    cross_border_b2b = buyer.business and buyer.vat_id_valid and not domestic

    if seller_area == "EU" and buyer_area == "EU":
        if cross_border_b2b:
            return TaxDecision(Category.REVERSE_CHARGE, Decimal(0), Scheme.REVERSE_CHARGE, buyer.country, NOTES[Scheme.REVERSE_CHARGE])
        # Domestic, or a consumer (also a business without a valid VAT id) elsewhere in the EU:
        # the buyer's country's rate; for another member state declared through the OSS.
        scheme = Scheme.DOMESTIC if domestic else Scheme.OSS
        return _taxed(category, buyer.country, scheme, on, rates, buyer)
    if seller_area == "GB" and domestic:
        return _taxed(category, "GB", Scheme.DOMESTIC, on, rates, buyer)
    if seller_area == "GB" and buyer_area == "EU" and not buyer.business:
        # B2C digital services from the UK: the consumer's member state, declared through the non-Union OSS.
        return _taxed(category, buyer.country, Scheme.OSS, on, rates, buyer)
    note = UK_REVERSE_CHARGE if seller_area == "GB" and buyer.business else NOTES[Scheme.OUTSIDE_SCOPE]
    return TaxDecision(Category.OUTSIDE_SCOPE, Decimal(0), Scheme.OUTSIDE_SCOPE, buyer.country, note)


def _taxed(category: ProductCategory, country: str, scheme: Scheme, on: date, rates: RateTable, buyer: BuyerTax) -> TaxDecision:
    if buyer.tax_exempt:
        return TaxDecision(Category.EXEMPT, Decimal(0), Scheme.EXEMPT_BUYER, country, NOTES[Scheme.EXEMPT_BUYER])
    if category == "exempt":
        return TaxDecision(Category.EXEMPT, Decimal(0), Scheme.EXEMPT_PRODUCT, country, NOTES[Scheme.EXEMPT_PRODUCT])
    if category == "zero":
        return TaxDecision(Category.ZERO, Decimal(0), Scheme.ZERO_RATED, country)
    try:
        rate = rates.standard_rate(country, on)
    except RateNotFound as exc:
        raise TaxError(str(exc), code="tax_rate_unknown") from exc
    return TaxDecision(Category.STANDARD, rate, scheme, country)


def tax_date(timing: str, service_period_start: date, service_period_end: date) -> date:
    """The day whose rate applies: the service period's last day in arrears, its first in advance."""
    return service_period_start if timing == "advance" else service_period_end
