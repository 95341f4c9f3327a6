"""Discount rules: a percentage or a fixed amount off a subscription's, a product's or a whole
invoice's lines, optionally for N periods. Posting the same discount id again changes nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.errors import Conflict
from billing_runtime.service import ServiceRuntime
from billing_runtime.tenancy import select_scoped, tenant_owned
from rating.billrun import rating
from rating.catalogue.service import parse_price, price_book
from rating.discount.models import Discount
from rating.discount.schemas import DiscountIn, DiscountOut
from rating.errors import AccountNotFound, InvalidDiscount, InvalidPrice, ProductNotFound, SubscriptionNotFound
from rating.period import Period
from rating.subscription import repository as projections

DISCOUNT = tenant_owned(Discount, "seller_id")
DISCOUNTS_PUT = Counter("billing_discounts_put_total", "Discount PUTs, by outcome", ["outcome"])


def _out(row: Any) -> DiscountOut:
    return DiscountOut.model_validate(row, from_attributes=True)


def _decimal(value: Any, field: str) -> Decimal:
    try:
        return parse_price(value, field)
    except InvalidPrice as exc:
        raise InvalidDiscount(exc.message, field=field) from exc


async def put_discount(
    runtime: ServiceRuntime, session: AsyncSession, seller_id: str, distributor_id: str | None, discount_id: str, body: DiscountIn
) -> DiscountOut:
    if (body.percent is None) == (body.amount is None):
        raise InvalidDiscount("give either percent or amount", field="percent")
    percent = _decimal(body.percent, "percent") if body.percent is not None else None
    amount = _decimal(body.amount, "amount") if body.amount is not None else None
    if percent is not None and not 0 < percent <= 100:
        raise InvalidDiscount("percent must be more than 0 and at most 100", field="percent")
    Period.parse(body.first_period)
    account, product, subscription = body.account_id, body.product_code, None
    if body.scope == "subscription":
        found = await projections.subscription(session, seller_id, body.subscription_id or "")
        if found is None:
            raise SubscriptionNotFound(f"no subscription {body.subscription_id!r}", field="subscription_id")
        account, product, subscription = found.account_id, found.product_code, found.subscription_id
    elif body.scope == "product" and not product:
        raise InvalidDiscount("a product discount names its product_code", field="product_code")
    elif body.scope == "product" and product not in (await price_book(session, seller_id, distributor_id)).products:
        raise ProductNotFound(f"no product {product!r} in this seller's or the distributor's catalogue", field="product_code")
    elif body.scope == "invoice" and not account:
        raise InvalidDiscount("an invoice discount names its account_id", field="account_id")
    if account is not None and not await projections.buyers(session, seller_id, account):
        raise AccountNotFound(f"no customer account {account!r} of this seller", field="account_id")
    row = {
        "seller_id": seller_id,
        "discount_id": discount_id,
        "scope": body.scope,
        "account_id": account,
        "product_code": product if body.scope != "invoice" else None,
        "subscription_id": subscription,
        "percent": percent,
        "amount": amount,
        "first_period": Period.parse(body.first_period).label,
        "periods": body.periods,
        "created_at": runtime.clock.now(),
    }
    inserted = (await session.execute(pg_insert(DISCOUNT).values(**row).on_conflict_do_nothing().returning(DISCOUNT.c.discount_id))).first()
    stored = (await session.execute(select_scoped(DISCOUNT, seller_id).where(DISCOUNT.c.discount_id == discount_id))).first()
    same = all(getattr(stored, k) == v for k, v in row.items() if k != "created_at")
    if not same:
        DISCOUNTS_PUT.labels("conflict").inc()
        raise Conflict(f"discount {discount_id!r} exists with other terms; discounts are never edited", code="discount_conflict")
    DISCOUNTS_PUT.labels("created" if inserted else "unchanged").inc()
    return _out(stored)


async def list_discounts(session: AsyncSession, seller_id: str) -> list[DiscountOut]:
    rows = (await session.execute(select_scoped(DISCOUNT, seller_id).order_by(DISCOUNT.c.discount_id))).all()
    return [_out(r) for r in rows]


async def discounts_for_rating(session: AsyncSession, seller_id: str) -> list[rating.Discount]:
    rows = (await session.execute(select_scoped(DISCOUNT, seller_id))).all()
    return [
        rating.Discount(
            discount_id=r.discount_id,
            scope="invoice" if r.scope == "invoice" else "product",
            account_id=r.account_id,
            target=r.product_code,
            percent=r.percent,
            amount=r.amount,
            first_period=Period.parse(r.first_period),
            periods=r.periods,
        )
        for r in rows
    ]
