"""Tax determination (BILLING-RULES §5) and EN 16931 totals: pure rules, no servers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import eu_vat_rates_data
import pytest
from invoicing_testkit import period_closed, rated

from billing_events import RatedLine
from invoicing.invoice.service import build_draft
from invoicing.tax.engine import (
    NOTES,
    UK_REVERSE_CHARGE,
    BuyerCountryMissing,
    BuyerTax,
    Category,
    Scheme,
    SellerTax,
    UnsupportedTaxCategory,
    determine_tax,
    tax_date,
)
from invoicing.tax.rates import EU_MEMBER_STATES, RateNotFound, RateTable, RateWindow, default_rate_table
from invoicing.tax.vat_id import check_vat_id

OCT_31 = date(2026, 10, 31)
IE_SELLER = SellerTax("IE", "IE6388047V")
GB_SELLER = SellerTax("GB", "GB980780684")


class TestRateTable:
    def test_every_member_state_and_the_uk(self) -> None:
        assert len(EU_MEMBER_STATES) == 27
        assert set(default_rate_table().countries()) == EU_MEMBER_STATES | {"GB"}

    def test_cross_check_with_the_commissions_current_rates(self) -> None:
        # duty27-eu-vat's dated windows against eu-vat-rates-data (EC TEDB), as of the latter's date.
        as_of = date.fromisoformat(eu_vat_rates_data.data_version)
        table = default_rate_table()
        for country in sorted(EU_MEMBER_STATES | {"GB"}):
            expected = Decimal(str(eu_vat_rates_data.get_standard_rate(country)))
            assert table.standard_rate(country, as_of) == expected, country

    def test_rate_changes_mid_year_on_the_day(self) -> None:
        table = default_rate_table()
        assert (table.standard_rate("FI", date(2024, 8, 31)), table.standard_rate("FI", date(2024, 9, 1))) == (Decimal("24"), Decimal("25.5"))
        assert (table.standard_rate("EE", date(2025, 6, 30)), table.standard_rate("EE", date(2025, 7, 1))) == (Decimal("22"), Decimal("24"))
        assert (table.standard_rate("RO", date(2025, 7, 31)), table.standard_rate("RO", date(2025, 8, 1))) == (Decimal("19"), Decimal("21"))
        assert (table.standard_rate("DE", date(2020, 6, 30)), table.standard_rate("DE", date(2020, 7, 1))) == (Decimal("19"), Decimal("16"))
        assert table.standard_rate("GB", date(2009, 6, 1)) == Decimal("15")
        assert table.standard_rate("GR", OCT_31) == Decimal("24")  # EL in VAT, GR as a country

    def test_unknown_country_or_day_before_the_data_is_refused(self) -> None:
        with pytest.raises(RateNotFound):
            default_rate_table().standard_rate("US", OCT_31)
        with pytest.raises(RateNotFound):
            default_rate_table().standard_rate("FR", date(2015, 12, 31))

    def test_a_mid_year_change_in_an_invoice_follows_each_lines_timing(self) -> None:
        # Finland 24 → 25.5 on 2024-09-01: August's arrears line at 24, September's advance line at 25.5.
        lines = [
            rated("aug", "X", "1", "100.00", "EUR", start=date(2024, 8, 1), end=date(2024, 8, 31)),
            rated("sep", "X", "1", "100.00", "EUR", start=date(2024, 9, 1), end=date(2024, 9, 30)).model_copy(update={"timing": "advance"}),
        ]
        draft = build_draft(period_closed("s", "b", lines, currency="EUR"), SellerTax("FI"), BuyerTax("FI", business=False))
        assert [(b.rate, b.taxable.amount, b.tax.amount) for b in draft.breakdown] == [
            (Decimal("24"), Decimal("100.00"), Decimal("24.00")),
            (Decimal("25.5"), Decimal("100.00"), Decimal("25.50")),
        ]
        assert draft.total == Decimal("249.50")

    def test_a_table_of_our_own_dates_changes(self) -> None:
        table = RateTable([RateWindow("IE", date(2016, 1, 1), Decimal("23"), "t"), RateWindow("IE", date(2027, 3, 1), Decimal("22"), "t")])
        buyer = BuyerTax("IE")
        assert determine_tax(IE_SELLER, buyer, None, date(2027, 2, 28), table).rate == Decimal("23")
        assert determine_tax(IE_SELLER, buyer, None, date(2027, 3, 1), table).rate == Decimal("22")

    def test_tax_date_by_timing(self) -> None:
        assert tax_date("arrears", date(2026, 10, 1), OCT_31) == OCT_31
        assert tax_date("advance", date(2026, 10, 1), OCT_31) == date(2026, 10, 1)


class TestVatId:
    def test_valid_numbers(self) -> None:
        assert check_vat_id("DE 136 695 976", "DE").valid
        assert check_vat_id("136695976", "DE").vat_id == "DE136695976"
        assert check_vat_id("EL094259216", "GR").valid
        assert check_vat_id("GB980780684", "GB").valid

    def test_bad_checksum_or_wrong_country(self) -> None:
        bad = check_vat_id("DE136695977", "DE")
        assert not bad.valid and bad.reason is not None and "checksum" in bad.reason
        assert not check_vat_id("DE136695976", "FR").valid
        assert not check_vat_id("GB980780684", "DE").valid
        assert not check_vat_id("nonsense", "FR").valid


class TestDetermineTax:
    def test_domestic_b2b_and_b2c_at_the_sellers_rate(self) -> None:
        for buyer in (BuyerTax("IE", business=True, vat_id_valid=True), BuyerTax("IE", business=False)):
            decision = determine_tax(IE_SELLER, buyer, None, OCT_31)
            assert (decision.category, decision.rate, decision.scheme, decision.country) == (Category.STANDARD, Decimal("23"), Scheme.DOMESTIC, "IE")

    def test_intra_eu_b2b_is_reverse_charged_with_the_legal_mention(self) -> None:
        decision = determine_tax(IE_SELLER, BuyerTax("DE", business=True, vat_id_valid=True), None, OCT_31)
        assert (decision.category, decision.rate, decision.scheme) == (Category.REVERSE_CHARGE, Decimal(0), Scheme.REVERSE_CHARGE)
        assert decision.note is not None and "Article 196" in decision.note and "2006/112/EC" in decision.note

    def test_business_without_a_valid_vat_id_is_a_consumer(self) -> None:
        decision = determine_tax(IE_SELLER, BuyerTax("DE", business=True, vat_id_valid=False), None, OCT_31)
        assert (decision.category, decision.rate, decision.scheme, decision.country) == (Category.STANDARD, Decimal("19"), Scheme.OSS, "DE")

    def test_b2c_in_another_member_state_at_its_rate_through_the_oss(self) -> None:
        assert determine_tax(IE_SELLER, BuyerTax("FR", business=False), None, OCT_31).rate == Decimal("20")
        assert determine_tax(IE_SELLER, BuyerTax("HU", business=False), None, OCT_31).rate == Decimal("27")
        assert determine_tax(IE_SELLER, BuyerTax("FI", business=False), None, date(2024, 8, 31)).rate == Decimal("24")

    def test_outside_the_eu_is_out_of_scope(self) -> None:
        for buyer in (BuyerTax("US", business=True), BuyerTax("US", business=False), BuyerTax("GB", business=False), BuyerTax("CH", business=True)):
            decision = determine_tax(IE_SELLER, buyer, None, OCT_31)
            assert (decision.category, decision.rate, decision.scheme) == (Category.OUTSIDE_SCOPE, Decimal(0), Scheme.OUTSIDE_SCOPE)
            assert decision.note == NOTES[Scheme.OUTSIDE_SCOPE]

    def test_uk_seller(self) -> None:
        domestic = determine_tax(GB_SELLER, BuyerTax("GB", business=False), None, OCT_31)
        assert (domestic.category, domestic.rate, domestic.scheme) == (Category.STANDARD, Decimal("20"), Scheme.DOMESTIC)
        b2b_eu = determine_tax(GB_SELLER, BuyerTax("DE", business=True, vat_id_valid=True), None, OCT_31)
        assert (b2b_eu.category, b2b_eu.scheme, b2b_eu.note) == (Category.OUTSIDE_SCOPE, Scheme.OUTSIDE_SCOPE, UK_REVERSE_CHARGE)
        b2c_eu = determine_tax(GB_SELLER, BuyerTax("FR", business=False), None, OCT_31)
        assert (b2c_eu.rate, b2c_eu.scheme, b2c_eu.country) == (Decimal("20"), Scheme.OSS, "FR")
        assert determine_tax(GB_SELLER, BuyerTax("US", business=False), None, OCT_31).scheme == Scheme.OUTSIDE_SCOPE

    def test_seller_outside_eu_and_uk_or_without_a_country(self) -> None:
        assert determine_tax(SellerTax("US"), BuyerTax(None), None, OCT_31).scheme == Scheme.OUTSIDE_SCOPE
        assert determine_tax(SellerTax(None), BuyerTax("DE"), None, OCT_31).scheme == Scheme.NOT_ASSESSED

    def test_exempt_buyer_and_exempt_or_zero_rated_products(self) -> None:
        exempt_buyer = determine_tax(IE_SELLER, BuyerTax("IE", tax_exempt=True), None, OCT_31)
        assert (exempt_buyer.category, exempt_buyer.rate, exempt_buyer.scheme) == (Category.EXEMPT, Decimal(0), Scheme.EXEMPT_BUYER)
        assert exempt_buyer.note is not None and "Article 151" in exempt_buyer.note
        exempt_product = determine_tax(IE_SELLER, BuyerTax("FR", business=False), "exempt", OCT_31)
        assert (exempt_product.category, exempt_product.scheme) == (Category.EXEMPT, Scheme.EXEMPT_PRODUCT)
        assert determine_tax(IE_SELLER, BuyerTax("IE"), "zero", OCT_31).category == Category.ZERO
        # Reverse charge wins over the buyer's exemption: the buyer accounts for the tax.
        assert determine_tax(IE_SELLER, BuyerTax("DE", vat_id_valid=True, tax_exempt=True), None, OCT_31).scheme == Scheme.REVERSE_CHARGE

    def test_bad_input(self) -> None:
        with pytest.raises(BuyerCountryMissing, match="buyer without a country") as missing:
            determine_tax(IE_SELLER, BuyerTax(None), None, OCT_31)
        assert missing.value.code == "buyer_country_missing"
        with pytest.raises(UnsupportedTaxCategory, match="'luxury'") as unsupported:
            determine_tax(IE_SELLER, BuyerTax("IE"), "luxury", OCT_31)
        assert unsupported.value.code == "unsupported_tax_category"


def _example_b_line(line_id: str, qty: str, *, amount: str | None = None, start: date, end: date) -> RatedLine:
    return rated(line_id, "M365-BP", qty, "20.60", "EUR", amount=amount, start=start, end=end).model_copy(update={"timing": "advance"})


class TestWorkedExampleB:
    """BILLING-RULES worked example B: Cloudy Ltd, Ireland, 23%; M365-BP 20.60/user, advance, daily proration."""

    OCT = (date(2026, 10, 1), date(2026, 10, 31))
    NOV = (date(2026, 11, 1), date(2026, 11, 30))

    def test_dublin_bakery_domestic(self) -> None:
        closed = period_closed("cloudy", "bakery", [_example_b_line("l1", "5", start=self.OCT[0], end=self.OCT[1])], currency="EUR")
        draft = build_draft(closed, IE_SELLER, BuyerTax("IE", business=True))
        assert (draft.net_total, draft.tax_total, draft.total) == (Decimal("103.00"), Decimal("23.69"), Decimal("126.69"))

    def test_acme_reverse_charge_october_and_november(self) -> None:
        acme = BuyerTax("DE", business=True, vat_id_valid=check_vat_id("DE136695976", "DE").valid)
        october = period_closed("cloudy", "acme", [_example_b_line("l1", "10", start=self.OCT[0], end=self.OCT[1])], currency="EUR")
        oct_draft = build_draft(october, IE_SELLER, acme)
        assert (oct_draft.net_total, oct_draft.tax_total, oct_draft.total) == (Decimal("206.00"), Decimal("0.00"), Decimal("206.00"))
        prorated = str(Decimal(4) * Decimal("20.60") * Decimal(15) / Decimal(31))
        november_lines = [
            _example_b_line("added", "4", amount=prorated, start=date(2026, 10, 17), end=self.OCT[1]),
            _example_b_line("nov", "14", start=self.NOV[0], end=self.NOV[1]),
        ]
        nov_draft = build_draft(period_closed("cloudy", "acme", november_lines, currency="EUR", start=self.NOV[0], end=self.NOV[1]), IE_SELLER, acme)
        assert [line.net for line in nov_draft.lines] == [Decimal("39.87"), Decimal("288.40")]
        assert (nov_draft.tax_total, nov_draft.total) == (Decimal("0.00"), Decimal("328.27"))
        [entry] = nov_draft.breakdown
        assert (entry.tax_category, entry.note) == ("AE", NOTES[Scheme.REVERSE_CHARGE])

    def test_jean_dupont_french_consumer(self) -> None:
        closed = period_closed("cloudy", "jean", [_example_b_line("l1", "1", start=self.OCT[0], end=self.OCT[1])], currency="EUR")
        draft = build_draft(closed, IE_SELLER, BuyerTax("FR", business=False))
        assert (draft.net_total, draft.tax_total, draft.total) == (Decimal("20.60"), Decimal("4.12"), Decimal("24.72"))
        assert draft.lines[0].tax.scheme == Scheme.OSS


class TestEn16931Totals:
    def test_vat_per_rate_on_the_sum_of_rounded_nets(self) -> None:
        lines = [rated(f"l{i}", "X", "1", "0.335", "EUR") for i in range(3)]
        draft = build_draft(period_closed("s", "b", lines, currency="EUR"), IE_SELLER, BuyerTax("IE"))
        # nets 0.34 × 3 = 1.02; VAT on the sum 1.02 × 23% = 0.2346 → 0.23; per line it would be 3 × 0.08 = 0.24.
        assert (draft.net_total, draft.tax_total) == (Decimal("1.02"), Decimal("0.23"))

    def test_minor_units_jpy_and_kwd(self) -> None:
        jpy = build_draft(period_closed("s", "b", [rated("l1", "X", "3", "333.5", "JPY")], currency="JPY"), IE_SELLER, BuyerTax("IE"))
        assert (jpy.net_total, jpy.tax_total, jpy.total) == (Decimal("1001"), Decimal("230"), Decimal("1231"))  # 1001 × 23% = 230.23
        kwd = build_draft(period_closed("s", "b", [rated("l1", "X", "1", "10.0005", "KWD")], currency="KWD"), IE_SELLER, BuyerTax("IE"))
        assert (kwd.net_total, kwd.tax_total) == (Decimal("10.001"), Decimal("2.300"))  # 10.001 × 23% = 2.30023

    def test_discount_lines_reduce_the_taxable_amount(self) -> None:
        lines = [rated("l1", "X", "1", "100.00", "EUR"), rated("d1", "DISC", "1", "-10.00", "EUR").model_copy(update={"kind": "discount"})]
        draft = build_draft(period_closed("s", "b", lines, currency="EUR"), IE_SELLER, BuyerTax("IE"))
        assert (draft.net_total, draft.tax_total, draft.total) == (Decimal("90.00"), Decimal("20.70"), Decimal("110.70"))
