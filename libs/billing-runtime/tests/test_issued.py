"""The check every consumer of InvoiceIssued makes before keeping an invoice: its total in the
invoice's currency, a batch's mismatches refused one by one."""

from __future__ import annotations

from typing import Any

import pytest

from billing_events import CloudEvent, Money, new_event
from billing_events.testing import example_invoice_issued
from billing_runtime.inbox import RejectedEvents
from billing_runtime.issued import InvoiceCurrencyMismatch, check_invoice_currency, refuse_mismatched_currencies


def issued(invoice_id: str, *, total_currency: str = "USD") -> CloudEvent[Any]:
    data = example_invoice_issued("northwind", invoice_id, number=f"NW-{invoice_id}")
    data = data.model_copy(update={"total": Money.of(data.total.amount, total_currency)})
    return new_event(data, source="invoicing", tenant="northwind")


def test_a_total_in_another_currency_is_refused_with_its_code() -> None:
    check_invoice_currency(issued("i-1").data)
    with pytest.raises(InvoiceCurrencyMismatch, match="total is in EUR, not USD") as refused:
        check_invoice_currency(issued("i-2", total_currency="EUR").data)
    assert (refused.value.code, refused.value.status_code) == ("invoice_currency_mismatch", 422)


def test_a_batch_refuses_its_mismatches_alone() -> None:
    good, bad, worse = issued("i-1"), issued("i-2", total_currency="EUR"), issued("i-3", total_currency="GBP")
    refuse_mismatched_currencies([good])
    with pytest.raises(RejectedEvents) as rejected:
        refuse_mismatched_currencies([good, bad, worse])
    assert sorted(rejected.value.errors) == sorted([bad.id, worse.id])
    assert all(isinstance(error, InvoiceCurrencyMismatch) for error in rejected.value.errors.values())
