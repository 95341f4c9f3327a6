"""The shared customer factory builds what usage-ingest would announce, and refuses a field the
model would otherwise drop without a word."""

from __future__ import annotations

import pytest

from billing_events import Address, account_id
from billing_events.testing import make_customer


def test_a_customer_is_the_minimal_profile_of_its_partner_unless_fields_are_named() -> None:
    plain = make_customer("cloudy", "c7")
    assert (plain.account_id, plain.partner_id, plain.name, plain.billing_email) == (account_id("cloudy", "c7"), "cloudy", "Customer c7", "ap@c7.example")
    assert (plain.country, plain.currency, plain.revision, plain.vat_id, plain.address) == ("IE", "EUR", 1, None, None)
    address = Address(lines=["1 Main Street"], city="Dublin", country="IE")
    named = make_customer("cloudy", "c7", name="Contoso", country="US", currency="USD", revision=3, vat_id="IE6388047V", address=address)
    assert (named.name, named.country, named.currency, named.revision, named.vat_id, named.address) == ("Contoso", "US", "USD", 3, "IE6388047V", address)


def test_a_field_the_contract_does_not_have_is_refused() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        make_customer("cloudy", colour="blue")
