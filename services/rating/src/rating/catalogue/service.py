"""Catalogue rules: products with their billing policy, dated price lists in the seller's
currency, the seller's billing profile, and how a price is found for a period in either tier."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from opentelemetry import trace
from prometheus_client import Counter
from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, ProductPublished, derived_event_id, new_event
from billing_events.money import MINOR_UNITS
from billing_runtime.service import ServiceRuntime
from rating.billrun.rating import Price as TierPrice
from rating.billrun.rating import ProductInfo
from rating.business_days import BusinessCalendar, check_country
from rating.catalogue import repository as repo
from rating.catalogue.models import MARKUP_RULE
from rating.catalogue.schemas import MarkupIn, PriceIn, PriceOut, ProductIn, ProductOut, SellerIn, SellerOut
from rating.errors import InvalidCurrency, InvalidPolicy, InvalidPrice, InvalidPriceModel, PriceCurrencyMismatch, ProductNotFound
from rating.period import Period, zone
from rating.policy import BillingPolicy, QuantityRule, check, product_policy
from rating.pricing import PriceModel, PriceModelKind, parse_model

tracer = trace.get_tracer(__name__)
PRODUCTS_PUT = Counter("billing_catalogue_products_put_total", "Product PUTs, by outcome", ["outcome"])
PRICES_PUT = Counter("billing_catalogue_prices_put_total", "Price list PUTs, by outcome", ["outcome"])

_PLAIN_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")
MAX_PRICE_DIGITS = 30
MAX_PRICE_DECIMALS = 10


def parse_price(value: JsonValue, field: str = "unit_price") -> Decimal:
    """A price as sent: a plain decimal string (or an integer), never a float, not negative."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        # A float has already lost the exact amount the partner meant.
        raise InvalidPrice(f'{field} must be a decimal string such as "35.00"', field=field)
    text = str(value).strip()
    if text.startswith("-"):
        raise InvalidPrice(f"{field} cannot be negative", field=field)
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise InvalidPrice(f"{field} {text!r} is not a plain decimal number", field=field)
    try:
        price = Decimal(text)
    except InvalidOperation as exc:  # the pattern makes this unreachable; keep a 4xx regardless
        raise InvalidPrice(f"{field} {text!r} is not a decimal number", field=field) from exc
    digits = len(text.replace(".", "").lstrip("0"))
    decimals = len(text.partition(".")[2])
    if digits > MAX_PRICE_DIGITS or decimals > MAX_PRICE_DECIMALS:
        raise InvalidPrice(f"{field} allows at most {MAX_PRICE_DIGITS} digits, {MAX_PRICE_DECIMALS} after the point", field=field)
    return price


def parse_currency(value: JsonValue) -> str:
    if not isinstance(value, str) or value not in MINOR_UNITS:
        raise InvalidCurrency('currency must be an ISO 4217 code in capitals, such as "USD"', field="currency")
    return value


def seller_currencies(profile: Any) -> list[str]:
    """The currencies a seller bills in: its main currency, then the others it listed."""
    if profile is None or profile.currency is None:
        return []
    return [profile.currency, *(c for c in profile.currencies or () if c != profile.currency)]


async def _seller_currency_check(session: AsyncSession, seller_id: str, currency: str | None) -> None:
    """A price list is in one of its seller's currencies (when the seller has set them)."""
    allowed = seller_currencies(await repo.get_seller(session, seller_id))
    if allowed and currency is not None and currency not in allowed:
        raise PriceCurrencyMismatch(f"prices of this seller are in {', '.join(allowed)}, not {currency} (add it to the seller's currencies)", field="currency")


def to_out(row: Any) -> ProductOut:
    return ProductOut(
        code=row.code,
        name=row.name,
        description=row.description,
        category=row.category,
        unit_price=row.unit_price,
        currency=row.currency,
        quantity_rule=row.quantity_rule,
        unit=row.unit,
        tax_category=row.tax_category,
        kind=row.kind,
        policy=policy_of(row).as_json(),
        updated_at=row.updated_at,
    )


def policy_of(row: Any) -> BillingPolicy:
    return product_policy(QuantityRule(row.quantity_rule), row.policy)


def product_published(row: Any, distributor_id: str | None, source: str, now: datetime) -> CloudEvent[ProductPublished]:
    """The catalogue as other services hear of it: the event of a stored product at its revision
    (usage-ingest keeps a projection of it to refuse orders of unknown products and credits a
    product does not take). Its id derives from (seller, code, revision): the same revision
    published twice (the backfill of migration 0006, a replay) is one event."""
    data = ProductPublished(
        seller_id=row.seller_id,
        product_code=row.code,
        name=row.name,
        quantity_rule=row.quantity_rule,
        kind=row.kind,
        allows_credits=policy_of(row).allows_credits,
        wholesale=row.seller_id == distributor_id,
        revision=row.revision,
        updated_at=row.updated_at,
    )
    event_id = derived_event_id("product", row.seller_id, row.code, str(row.revision))
    return new_event(data, source=source, tenant=row.seller_id, event_id=event_id, subject=row.code, time=now)


async def put_product(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, distributor_id: str | None, code: str, body: ProductIn) -> ProductOut:
    """Create or replace a product of the seller's catalogue. The same body again changes nothing;
    a new or changed product is published (`ProductPublished`, in the same transaction)."""
    knobs = body.policy.model_dump(exclude_none=True) if body.policy else {}
    if "quantity_rule" in knobs or "snapshot_day" in knobs:
        raise InvalidPolicy("a product's quantity_rule and snapshot_day are top-level fields", field="policy")
    if body.snapshot_day is not None:
        knobs["snapshot_day"] = body.snapshot_day
    check(BillingPolicy(quantity_rule=body.quantity_rule).overridden({**knobs, "quantity_rule": body.quantity_rule.value}))
    unit_price = parse_price(body.unit_price) if body.unit_price is not None else None
    currency = parse_currency(body.currency) if body.currency is not None or unit_price is not None else None
    await _seller_currency_check(session, seller_id, currency)
    row = {
        "seller_id": seller_id,
        "code": code,
        "name": body.name,
        "description": body.description,
        "category": body.category,
        "unit_price": unit_price,
        "currency": currency,
        "quantity_rule": body.quantity_rule.value,
        "unit": body.unit,
        "tax_category": body.tax_category,
        "kind": body.kind or ("usage" if body.quantity_rule is QuantityRule.USAGE_SUM else "recurring"),
        "policy": knobs or None,
        "updated_at": runtime.clock.now(),
    }
    stored, changed = await repo.upsert_product(session, row)
    if changed:
        await runtime.outbox.add(session, product_published(stored, distributor_id, runtime.name, runtime.clock.now()))
    PRODUCTS_PUT.labels("changed" if changed else "unchanged").inc()
    return to_out(stored)


async def get_product(session: AsyncSession, seller_id: str, code: str) -> ProductOut:
    row = await repo.get_product(session, seller_id, code)
    if row is None:
        raise ProductNotFound(f"no product {code!r} in the catalogue")
    return to_out(row)


def price_out(row: Any) -> PriceOut:
    return PriceOut(product_code=row.product_code, effective_from=row.effective_from, currency=row.currency or None, price=row.model, updated_at=row.updated_at)


async def put_price(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, distributor_id: str | None, code: str, body: PriceIn) -> PriceOut:
    """A dated entry of the seller's price list for one of its products (or the distributor's)."""
    with tracer.start_as_current_span("put_price", attributes={"billing.seller_id": seller_id, "billing.product_code": code}):
        known = await repo.get_product(session, seller_id, code)
        if known is None and distributor_id is not None:
            known = await repo.get_product(session, distributor_id, code)
        if known is None:
            raise ProductNotFound(f"no product {code!r} in this seller's or the distributor's catalogue", field="product_code")
        model = parse_model(body.price)
        if model.model == PriceModelKind.MARKUP and seller_id == distributor_id:
            raise InvalidPriceModel("the distributor's list is the wholesale list: it cannot mark itself up", field="price.model")
        currency = parse_currency(body.currency) if body.currency is not None or model.model != PriceModelKind.MARKUP else None
        await _seller_currency_check(session, seller_id, currency)
        return await _store_price(runtime, session, seller_id, code, body.effective_from, currency, model)


async def put_markup(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, distributor_id: str | None, body: MarkupIn) -> PriceOut:
    """A partner's markup rule over wholesale, for every product without its own retail entry."""
    if seller_id == distributor_id:
        raise InvalidPriceModel("the distributor's list is the wholesale list: it cannot mark itself up")
    model = parse_model({"model": "markup", "markup_percent": body.markup_percent})
    return await _store_price(runtime, session, seller_id, MARKUP_RULE, body.effective_from, None, model)


async def _store_price(
    runtime: ServiceRuntime, session: AsyncSession, seller_id: str, code: str, effective_from: date, currency: str | None, model: PriceModel
) -> PriceOut:
    """One dated price-list entry, stored (an entry without a currency, a markup's, is stored with "")."""
    row = {
        "seller_id": seller_id,
        "product_code": code,
        "effective_from": effective_from,
        "currency": currency or "",
        "model": model.as_json(),
        "updated_at": runtime.clock.now(),
    }
    stored, changed = await repo.upsert_price(session, row)
    PRICES_PUT.labels("changed" if changed else "unchanged").inc()
    return price_out(stored)


def seller_out(row: Any, distributor_id: str | None) -> SellerOut:
    return SellerOut(
        seller_id=row.seller_id,
        currency=row.currency,
        currencies=list(row.currencies or []),
        country=row.country,
        time_zone=row.time_zone,
        issue_day=row.issue_day,
        scheduled=row.scheduled,
        is_distributor=row.seller_id == distributor_id,
        updated_at=row.updated_at,
    )


async def put_seller(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, distributor_id: str | None, body: SellerIn) -> SellerOut:
    zone(body.time_zone)
    check_country(body.country)
    for currency in (c for c in (body.currency, *body.currencies) if c is not None):
        parse_currency(currency)
    if body.currencies and body.currency is None:
        raise InvalidCurrency("a seller with other currencies needs its main one (currency) too", field="currency")
    others = sorted(set(body.currencies) - {body.currency})
    row = {**body.model_dump(), "currencies": others, "seller_id": seller_id, "updated_at": runtime.clock.now()}
    stored, _ = await repo.upsert_seller(session, row)
    return seller_out(stored, distributor_id)


# --- what a bill run needs --------------------------------------------------------------------


@dataclass(frozen=True)
class SellerTerms:
    seller_id: str
    currency: str | None
    tz: Any
    calendar: BusinessCalendar
    issue_day: int | None
    scheduled: bool

    def issue_date(self, period: Period) -> date:
        """The day a period's bill run is due: the issue day of the next month, or by default the
        first business day after the period (BILLING-RULES §1)."""
        if self.issue_day is not None:
            return period.next().start.replace(day=self.issue_day)
        return self.calendar.first_business_day_after(period.end)


async def seller_terms(session: AsyncSession, seller_id: str) -> SellerTerms:
    row = await repo.get_seller(session, seller_id)
    if row is None:
        return SellerTerms(seller_id, None, zone(None), BusinessCalendar(None), None, False)
    tz = ZoneInfo(row.time_zone) if row.time_zone != "UTC" else zone(None)
    return SellerTerms(seller_id, row.currency, tz, BusinessCalendar(row.country), row.issue_day, row.scheduled)


@dataclass(frozen=True)
class _Entry:
    effective_from: date
    currency: str | None  # None: a markup entry (its currency is its wholesale base's)
    model: PriceModel


class PriceBook:
    """The catalogue and price lists a tier rates with: the seller's own products and prices,
    falling back to the distributor's catalogue, and wholesale prices from the distributor's list.
    A seller may keep one list per currency: a price is looked up in the buyer's currency."""

    def __init__(self, seller_id: str, distributor_id: str | None, products: list[Any], prices: list[Any]) -> None:
        self.seller_id = seller_id
        self.distributor_id = distributor_id
        self.products: dict[str, ProductInfo] = {}
        entries: dict[tuple[str, str], list[_Entry]] = {}
        for row in sorted(products, key=lambda r: r.seller_id != distributor_id):  # the seller's own rows last: they win
            self.products[row.code] = ProductInfo(row.code, row.name, row.category, row.unit, row.tax_category, row.kind, policy_of(row))
            if row.unit_price is not None:
                entries.setdefault((row.seller_id, row.code), []).append(
                    _Entry(date.min, row.currency, PriceModel(PriceModelKind.PER_UNIT, unit_price=row.unit_price))
                )
        for row in prices:
            entries.setdefault((row.seller_id, row.product_code), []).append(_Entry(row.effective_from, row.currency or None, parse_model(row.model)))
        # At one date, an entry in a currency wins over a markup entry (sorted after it).
        self._entries = {key: sorted(found, key=lambda e: (e.effective_from, e.currency is not None)) for key, found in entries.items()}
        self.currencies = sorted({e.currency for found in entries.values() for e in found if e.currency is not None})

    def _in_force(self, seller_id: str, code: str, period: Period, currency: str) -> _Entry | None:
        """The latest entry on or before the period's first day in `currency` (or a markup entry)."""
        found = [e for e in self._entries.get((seller_id, code), []) if e.effective_from <= period.start and (e.currency is None or e.currency == currency)]
        return found[-1] if found else None

    def _other_currency(self, lookup: Callable[[str, Period, str], TierPrice | None], code: str, period: Period, currency: str) -> TierPrice | None:
        """A price in force in another currency than the buyer's: rating reports the buyer as
        unpriced in its currency (`currency_mismatch`) instead of not finding a price at all."""
        for other in self.currencies:
            if other != currency and (found := lookup(code, period, other)) is not None:
                return found
        return None

    def _wholesale_in(self, code: str, period: Period, currency: str) -> TierPrice | None:
        if self.distributor_id is None:
            return None
        entry = self._in_force(self.distributor_id, code, period, currency)
        if entry is None or entry.currency is None or entry.model.model == PriceModelKind.MARKUP:
            return None
        return TierPrice(entry.model, entry.currency)

    def _retail_in(self, code: str, period: Period, currency: str) -> TierPrice | None:
        entry = self._in_force(self.seller_id, code, period, currency) or self._in_force(self.seller_id, MARKUP_RULE, period, currency)
        if entry is None:
            return self._wholesale_in(code, period, currency) if self.seller_id == self.distributor_id else None
        if entry.model.model == PriceModelKind.MARKUP:
            base = self._wholesale_in(code, period, currency)
            if base is None:
                return None
            return TierPrice(entry.model, base.currency, base.model)
        return TierPrice(entry.model, entry.currency or "")

    def wholesale(self, code: str, period: Period, currency: str) -> TierPrice | None:
        """The distributor's price in `currency`; else one in another currency (then unrated)."""
        return self._wholesale_in(code, period, currency) or self._other_currency(self._wholesale_in, code, period, currency)

    def retail(self, code: str, period: Period, currency: str) -> TierPrice | None:
        """The seller's price in `currency`: its own entry, else its markup rule over wholesale in
        that currency (BILLING-RULES §4); else one in another currency (then unrated)."""
        return self._retail_in(code, period, currency) or self._other_currency(self._retail_in, code, period, currency)

    def priced_in(self, code: str, period: Period, currency: str, *, wholesale: bool = False) -> bool:
        """Whether the product has a price in `currency` for the period (the order check)."""
        return (self._wholesale_in if wholesale else self._retail_in)(code, period, currency) is not None


async def price_book(session: AsyncSession, seller_id: str, distributor_id: str | None) -> PriceBook:
    sellers = [seller_id] + ([distributor_id] if distributor_id else [])
    return PriceBook(seller_id, distributor_id, await repo.products_of(session, sellers), await repo.prices_of(session, sellers))
