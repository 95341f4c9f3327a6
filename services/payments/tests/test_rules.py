"""The pure rules of payments: no server, no database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from billing_events import account_id, new_event
from billing_events.money import fits_minor_units
from billing_events.testing import example_invoice_issued
from billing_runtime.api import InvalidCursor, decode_cursor, encode_cursor
from billing_runtime.errors import BillingError
from payments.collection.service import Reconciling
from payments.invoice.service import invoice_row, open_and_overpaid
from payments.methods.service import setup_call
from payments.payment.schemas import BankTransferIn
from payments.payment.service import (
    InvalidAmount,
    InvalidInvoiceReference,
    invoice_reference,
    is_same_payment,
    parse_amount,
)
from payments.providers.gateways import ProviderRefused, ProviderUnavailable, stripe_outcome


def transfer(**changes: object) -> BankTransferIn:
    body: dict[str, object] = {"id": "pay-1", "invoice_id": "inv-1", "amount": "1516.25", "currency": "USD", "received_on": "2026-11-20"}
    body.update(changes)
    return BankTransferIn.model_validate({k: v for k, v in body.items() if v is not None})


class TestParseAmount:
    @pytest.mark.parametrize(("raw", "expected"), [("1516.25", Decimal("1516.25")), ("0.01", Decimal("0.01")), (20, Decimal(20))])
    def test_accepts_positive_decimal_strings(self, raw: object, expected: Decimal) -> None:
        assert parse_amount(raw) == expected

    @pytest.mark.parametrize("raw", ["0", "0.00", "-5", 1516.25, "1e3", "abc", "", True, None, {"amount": "1"}])
    def test_refuses_floats_and_non_positive(self, raw: object) -> None:
        with pytest.raises(InvalidAmount) as err:
            parse_amount(raw)
        assert err.value.code == "invalid_amount"


class TestInvoiceReference:
    def test_exactly_one_is_needed(self) -> None:
        assert invoice_reference(transfer()).invoice_id == "inv-1"
        assert invoice_reference(transfer(invoice_id=None, invoice_number="NW-7")).number == "NW-7"
        with pytest.raises(InvalidInvoiceReference) as neither:
            invoice_reference(transfer(invoice_id=None))
        assert neither.value.code == "invoice_reference_required"
        with pytest.raises(InvalidInvoiceReference) as both:
            invoice_reference(transfer(invoice_number="NW-7"))
        assert both.value.code == "invoice_reference_ambiguous"


class TestIsSamePayment:
    stored = SimpleNamespace(
        invoice_id="inv-1", invoice_number="NW-7", amount=Decimal("1516.25"), currency="USD", received_on=date(2026, 11, 20), reference=None
    )

    def test_same_meaning_is_a_repeat(self) -> None:
        assert is_same_payment(self.stored, transfer(amount="1516.250"), Decimal("1516.250"))
        assert is_same_payment(self.stored, transfer(invoice_id=None, invoice_number="NW-7"), Decimal("1516.25"))

    @pytest.mark.parametrize(
        "changes",
        [{"amount": "1516.26"}, {"received_on": "2026-11-21"}, {"reference": "NW-7"}, {"invoice_id": "inv-2"}, {"currency": "EUR"}],
    )
    def test_any_other_detail_is_a_conflict(self, changes: dict[str, str]) -> None:
        request = transfer(**changes)
        assert not is_same_payment(self.stored, request, parse_amount(request.amount))


class TestOpenAmount:
    def test_partial_full_and_overpaid(self) -> None:
        assert open_and_overpaid(Decimal("1516.25"), Decimal("1000"), Decimal(0), "USD") == (Decimal("516.25"), Decimal("0.00"))
        assert str(open_and_overpaid(Decimal("1516.25"), Decimal("1516.25"), Decimal(0), "USD")[0]) == "0.00"
        assert open_and_overpaid(Decimal("1516.25"), Decimal("1600"), Decimal(0), "USD") == (Decimal("0.00"), Decimal("83.75"))
        assert str(open_and_overpaid(Decimal("1000"), Decimal("1"), Decimal(0), "JPY")[0]) == "999"

    def test_credited_counts_like_paid(self) -> None:
        assert open_and_overpaid(Decimal("1516.25"), Decimal("1000"), Decimal("16.25"), "USD") == (Decimal("500.00"), Decimal("0.00"))
        assert open_and_overpaid(Decimal("100.00"), Decimal("60.00"), Decimal("50.00"), "USD") == (Decimal("0.00"), Decimal("10.00"))
        # PYG has no minor unit (ISO 4217); payments' old table wrote it with two decimals.
        assert str(open_and_overpaid(Decimal("150000"), Decimal("50000"), Decimal(0), "PYG")[0]) == "100000"

    def test_amounts_finer_than_the_currency_do_not_fit(self) -> None:
        assert fits_minor_units(Decimal("1.25"), "USD")
        assert fits_minor_units(Decimal("1.250"), "USD")
        assert not fits_minor_units(Decimal("1.255"), "USD")
        assert not fits_minor_units(Decimal("1.5"), "JPY")
        assert fits_minor_units(Decimal("1.125"), "KWD")


def test_invoice_row_takes_the_seller_from_the_tenant() -> None:
    data = example_invoice_issued("northwind", "inv-1", number="NW-7")
    row = invoice_row(new_event(data, source="invoicing", tenant="northwind"))
    assert (row["tenant"], row["seller_id"], row["account_id"]) == ("northwind", account_id("distributor", "northwind"), account_id("northwind", "c-1"))
    assert row["total"] == Decimal("1516.25") and row["amount_received"] == 0


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor("2026-11-20T10:00:00+00:00", "pay-1"), 2) == ["2026-11-20T10:00:00+00:00", "pay-1"]
    for bad in ("not a cursor", encode_cursor("only-one")):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad, 2)


class TestStripeOutcome:
    """Only Stripe's final word fails an attempt; every other answer leaves it open."""

    @staticmethod
    def intent(status: str, error: dict[str, str] | None = None) -> dict[str, object]:
        return {"id": "pi_1", "object": "payment_intent", "status": status, "last_payment_error": error, "metadata": {"attempt_id": "inv-1:1"}}

    @pytest.mark.parametrize("status", ["requires_payment_method", "requires_confirmation", "requires_action", "processing", "requires_capture"])
    def test_a_new_or_undecided_intent_is_pending(self, status: str) -> None:
        assert stripe_outcome(self.intent(status), "payment_intent.created").status == "pending"
        assert stripe_outcome(self.intent(status)).status == "pending"

    def test_a_confirmed_intent_with_its_last_error_set_failed_with_the_decline(self) -> None:
        error = {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}
        outcome = stripe_outcome(self.intent("requires_payment_method", error))
        assert (outcome.status, outcome.reason_code, outcome.reason) == ("failed", "insufficient_funds", "Your card has insufficient funds.")

    @pytest.mark.parametrize(("status", "event_type"), [("requires_payment_method", "payment_intent.payment_failed"), ("canceled", None)])
    def test_the_failure_event_or_a_canceled_intent_failed(self, status: str, event_type: str | None) -> None:
        assert stripe_outcome(self.intent(status), event_type).status == "failed"

    def test_succeeded_whatever_the_event(self) -> None:
        outcome = stripe_outcome(self.intent("succeeded"), "payment_intent.created")
        assert (outcome.status, outcome.provider_ref, outcome.metadata) == ("succeeded", "pi_1", {"attempt_id": "inv-1:1"})


def test_an_unknown_attempt_is_asked_again_at_least_every_max_interval() -> None:
    reconciling = Reconciling(after=30, max_interval=300, processing_check=3600)
    assert [reconciling.unknown_retry(n).total_seconds() for n in (1, 2, 3, 4, 5, 1000)] == [30, 60, 120, 240, 300, 300]


class TestProviderUnits:
    """What each provider's API is sent for an amount: ISO 4217 minor units, except where Stripe
    counts a currency otherwise (ISK two-decimal in its API, MGA zero-decimal)."""

    def test_iso_minor_units_for_most_currencies(self) -> None:
        from payments.providers.gateways import provider_units

        assert provider_units("stripe", Decimal("163.59"), "EUR") == 16359
        assert provider_units("stripe", Decimal("1500"), "JPY") == 1500
        assert provider_units("stripe", Decimal("1.230"), "KWD") == 1230
        assert provider_units("gocardless", Decimal("82.40"), "EUR") == 8240

    def test_stripe_special_cases(self) -> None:
        from payments.providers.gateways import provider_units

        assert provider_units("stripe", Decimal("5"), "ISK") == 500  # 100 is 1 króna at Stripe
        assert provider_units("stripe", Decimal("1200"), "MGA") == 1200  # whole ariary at Stripe
        assert provider_units("gocardless", Decimal("5"), "ISK") == 5

    def test_an_amount_stripe_cannot_take_is_refused_not_rounded(self) -> None:
        from billing_events.money import NotInMinorUnits
        from payments.providers.gateways import provider_units

        with pytest.raises(NotInMinorUnits):
            provider_units("stripe", Decimal("1200.50"), "MGA")


class TestSetupCall:
    """A provider call on the buyer's request (saving, confirming or removing a method): counted
    by its result, no answer or a refusal turned into the buyer's 503 or 422."""

    @staticmethod
    def counted(result: str) -> float:
        labels = {"provider": "gocardless", "operation": "remove", "result": result}
        return REGISTRY.get_sample_value("billing_payment_method_provider_calls_total", labels) or 0.0

    def test_an_answer_is_counted_ok(self) -> None:
        before = self.counted("ok")
        with setup_call("gocardless", "remove", unavailable="send the same request again", refused="refused the removal"):
            pass
        assert self.counted("ok") == before + 1

    @pytest.mark.parametrize(
        ("raised", "result", "status", "message", "provider_code"),
        [
            (ProviderUnavailable(), "unavailable", 503, "gocardless did not answer; send the same request again", None),
            (ProviderRefused("invalid_state", "mandate is cancelled"), "refused", 422, "gocardless refused the removal: mandate is cancelled", "invalid_state"),
        ],
    )
    def test_no_answer_or_a_refusal_is_the_buyers_error(self, raised: Exception, result: str, status: int, message: str, provider_code: str | None) -> None:
        before, ok_before = self.counted(result), self.counted("ok")
        with pytest.raises(BillingError) as caught:
            with setup_call("gocardless", "remove", unavailable="send the same request again", refused="refused the removal"):
                raise raised
        assert (caught.value.status_code, caught.value.message, caught.value.extra.get("provider_code")) == (status, message, provider_code)
        assert caught.value.__cause__ is raised
        assert (self.counted(result), self.counted("ok")) == (before + 1, ok_before)
