"""How payment methods and payments read on the customer's pages."""

from __future__ import annotations

from portal.labels import describe, expiry
from portal.receipts import source


def test_a_card_a_mandate_and_a_bank_transfer_read_as_the_customer_knows_them() -> None:
    card = {"type": "card", "details": {"brand": "american_express", "last4": "0005", "exp_month": 3, "exp_year": 2031}}
    assert (describe(card), expiry(card)) == ("American Express •••• 0005", "03/2031")
    assert describe({"type": "card", "details": {}}) == "Card" and expiry({"type": "card", "details": {}}) is None
    assert describe({"type": "direct_debit", "method_ref": "MD000123", "details": {}}) == "Direct Debit · MD000123"
    assert describe({"type": "direct_debit", "method_ref": None}) == "Direct Debit"
    assert describe({"type": "bank_transfer"}) == "Bank transfer"


def test_a_payment_names_the_statement_line_it_was_matched_from() -> None:
    assert source({"payment_id": "stmt:CAMT-2026-11:4"}) == {"kind": "statement", "statement": "CAMT-2026-11", "line": "4"}
    assert source({"payment_id": "stmt:a:b:12"}) == {"kind": "statement", "statement": "a:b", "line": "12"}
    assert source({"payment_id": "credit:inv-1", "provider": "account_credit"}) == {"kind": "credit"}
    assert source({"payment_id": "inv-1:1", "provider": "stripe"}) is None
