"""Whether an order can be billed, before (or after) it is posted: its product has a price in
the buyer's currency for the order's first period.

Orders are posted to usage-ingest, which knows no prices; rating learns of them afterwards from
`SubscriptionOrdered`. So rating offers the check itself (`POST /v1/order-checks`: 200 when the
order is priced, 422 `no_price_in_currency` when not), and shows the same finding on the
subscription (`GET /v1/subscriptions/{id}` → `pricing`) and in every bill run's result."""

from __future__ import annotations

from datetime import date

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import account_id as billing_account_id
from rating.catalogue.schemas import OrderCheckIn, PricingOut
from rating.catalogue.service import PriceBook, parse_currency, price_book, seller_terms
from rating.errors import AccountNotFound, NoPriceInCurrency, ProductNotFound
from rating.period import Period
from rating.subscription import repository as projections

tracer = trace.get_tracer(__name__)
ORDER_CHECKS = Counter("billing_rating_order_checks_total", "Order checks (and subscription pricing views), by outcome", ["outcome"])


async def pricing(
    session: AsyncSession,
    seller_id: str,
    distributor_id: str | None,
    product_code: str,
    on: date,
    *,
    account_id: str | None = None,
    currency: str | None = None,
) -> PricingOut:
    """The product's price finding for the buyer's currency in the period containing `on`."""
    with tracer.start_as_current_span("order_pricing", attributes={"billing.seller_id": seller_id, "billing.product_code": product_code}):
        if currency is None and account_id is not None:
            found = await projections.buyers(session, seller_id, account_id)
            currency = found[0].currency if found else None
        book = await price_book(session, seller_id, distributor_id)
        period = Period.containing(on, (await seller_terms(session, seller_id)).tz)
        product = book.products.get(product_code)
        codes = [product_code] + ([product.policy.setup_product] if product is not None and product.policy.setup_product else [])
        if currency is None:
            return PricingOut(product_code=product_code, period=period.label, currency=None, priced=None, problem="unknown_account")
        wholesale = await _wholesale_priced(session, seller_id, distributor_id, book, codes, period)
        unpriced = [code for code in codes if not book.priced_in(code, period, currency)]
        if not unpriced:
            return PricingOut(product_code=product_code, period=period.label, currency=currency, priced=True, wholesale_priced=wholesale)
        other = book.retail(unpriced[0], period, currency)
        return PricingOut(
            product_code=product_code,
            period=period.label,
            currency=currency,
            priced=False,
            problem="no_price_in_currency" if other is not None else "no_price",
            unpriced_products=unpriced,
            priced_in=other.currency if other is not None else None,
            wholesale_priced=wholesale,
        )


async def _wholesale_priced(
    session: AsyncSession, seller_id: str, distributor_id: str | None, book: PriceBook, codes: list[str], period: Period
) -> bool | None:
    """For a partner's order: whether the distributor's wholesale list prices it in the currency
    of the partner's account at the distributor (None: no distributor, or no such account yet).
    The partner cannot fix the distributor's list, so this is reported, not refused; the
    distributor's run reports it too."""
    if distributor_id is None or seller_id == distributor_id:
        return None
    # The partner's account at the distributor (as billrun.service.partner_account_id).
    account = await projections.buyers(session, distributor_id, billing_account_id(distributor_id, seller_id))
    if not account:
        return None
    return all(book.priced_in(code, period, account[0].currency, wholesale=True) for code in codes)


async def check_order(session: AsyncSession, seller_id: str, distributor_id: str | None, body: OrderCheckIn) -> PricingOut:
    """An order as it would be posted: 200 priced, else 422 with the currency that has no price."""
    currency = parse_currency(body.currency) if body.currency is not None else None
    if currency is None and body.account_id is None:
        raise AccountNotFound("name the buyer (account_id) or its currency", field="account_id")
    book = await price_book(session, seller_id, distributor_id)
    if body.product_code not in book.products:
        ORDER_CHECKS.labels("product_not_found").inc()
        raise ProductNotFound(f"no product {body.product_code!r} in this seller's or the distributor's catalogue", field="product_code")
    found = await pricing(session, seller_id, distributor_id, body.product_code, body.start_on, account_id=body.account_id, currency=currency)
    if found.problem == "unknown_account":
        ORDER_CHECKS.labels("account_not_found").inc()
        raise AccountNotFound(f"no customer account {body.account_id!r} of this seller (yet): give its currency", field="account_id")
    if not found.priced:
        ORDER_CHECKS.labels("unpriced").inc()
        where = f"; this seller prices it in {found.priced_in}" if found.priced_in else ""
        raise NoPriceInCurrency(
            f"{', '.join(found.unpriced_products)} has no price in {found.currency} for {found.period}{where}: the order could not be billed",
            field="currency",
            currency=found.currency,
            period=found.period,
            unpriced_products=found.unpriced_products,
            priced_in=found.priced_in,
        )
    ORDER_CHECKS.labels("priced").inc()
    return found
