"""Expected failures of rating, each with a stable code."""

from __future__ import annotations

from billing_runtime.errors import Conflict, NotFound, Unprocessable


class InvalidPrice(Unprocessable):
    code = "invalid_price"


class InvalidCurrency(Unprocessable):
    code = "invalid_currency"


class InvalidPeriod(Unprocessable):
    code = "invalid_period"


class ProductNotFound(NotFound):
    code = "product_not_found"


class BillRunNotFound(NotFound):
    code = "bill_run_not_found"


class AccountNotFound(NotFound):
    code = "account_not_found"


class PeriodNotEnded(Conflict):
    code = "period_not_ended"


class InvalidTimeZone(Unprocessable):
    code = "invalid_time_zone"


class InvalidCountry(Unprocessable):
    code = "invalid_country"


class InvalidPolicy(Unprocessable):
    code = "invalid_policy"


class InvalidSnapshotDay(Unprocessable):
    code = "invalid_snapshot_day"


class InvalidPriceModel(Unprocessable):
    code = "invalid_price_model"


class PriceCurrencyMismatch(Unprocessable):
    """A price list in another currency than its seller's."""

    code = "price_currency_mismatch"


class InvalidDiscount(Unprocessable):
    code = "invalid_discount"


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


class SellerNotConfigured(NotFound):
    code = "seller_not_configured"


class NoPriceInCurrency(Unprocessable):
    """An order the seller could not bill: its product has no price in the buyer's currency."""

    code = "no_price_in_currency"
