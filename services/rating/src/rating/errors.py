"""Expected failures of rating, each with a stable code."""

from __future__ import annotations

from billing_runtime.errors import BillingError, Conflict, NotFound


class InvalidPrice(BillingError):
    status_code = 422
    code = "invalid_price"


class InvalidCurrency(BillingError):
    status_code = 422
    code = "invalid_currency"


class InvalidPeriod(BillingError):
    status_code = 422
    code = "invalid_period"


class ProductNotFound(NotFound):
    code = "product_not_found"


class BillRunNotFound(NotFound):
    code = "bill_run_not_found"


class AccountNotFound(NotFound):
    code = "account_not_found"


class PeriodNotEnded(Conflict):
    code = "period_not_ended"


class InvalidTimeZone(BillingError):
    status_code = 422
    code = "invalid_time_zone"


class InvalidCountry(BillingError):
    status_code = 422
    code = "invalid_country"


class InvalidPolicy(BillingError):
    status_code = 422
    code = "invalid_policy"


class InvalidSnapshotDay(BillingError):
    status_code = 422
    code = "invalid_snapshot_day"


class InvalidPriceModel(BillingError):
    status_code = 422
    code = "invalid_price_model"


class PriceCurrencyMismatch(BillingError):
    """A price list in another currency than its seller's."""

    status_code = 422
    code = "price_currency_mismatch"


class InvalidDiscount(BillingError):
    status_code = 422
    code = "invalid_discount"


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


class SellerNotConfigured(NotFound):
    code = "seller_not_configured"


class NoPriceInCurrency(BillingError):
    """An order the seller could not bill: its product has no price in the buyer's currency."""

    status_code = 422
    code = "no_price_in_currency"
