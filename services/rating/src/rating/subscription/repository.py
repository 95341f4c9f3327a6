"""Every query of the projections: idempotent writes, and the reads a rating needs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, Text, any_, bindparam, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import scoped, select_scoped, tenant_owned
from rating.db import by_column, unnest_insert
from rating.subscription.models import BuyerAccount, QuantityObservation, Subscription, SubscriptionChange, SubscriptionPolicy, UsageRecord

BUYER: Table = tenant_owned(BuyerAccount, "seller_id")
SUBSCRIPTION: Table = tenant_owned(Subscription, "seller_id")
CHANGE: Table = tenant_owned(SubscriptionChange, "seller_id")
USAGE: Table = tenant_owned(UsageRecord, "seller_id")
OBSERVATION: Table = tenant_owned(QuantityObservation, "seller_id")
POLICY: Table = tenant_owned(SubscriptionPolicy, "seller_id")


async def insert_once(session: AsyncSession, table: Table, row: dict[str, Any], keys: tuple[str, ...]) -> None:
    await session.execute(pg_insert(table).values(**row).on_conflict_do_nothing(index_elements=list(keys)))


_BUYER_COLUMNS = ("seller_id", "account_id", "external_id", "name", "currency", "revision")
_UPSERT_BUYERS = unnest_insert(
    BUYER,
    _BUYER_COLUMNS,
    "ON CONFLICT (seller_id, account_id) DO UPDATE SET external_id = excluded.external_id, name = excluded.name, "
    "currency = excluded.currency, revision = excluded.revision WHERE t.revision < excluded.revision",
)


async def upsert_buyers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Buyers (one row per seller and account) in one statement, keeping the highest revision: an
    older revision arriving late changes nothing."""
    if not rows:
        return
    await session.execute(_UPSERT_BUYERS, by_column(rows, _BUYER_COLUMNS))


_SUBSCRIPTION_COLUMNS = ("seller_id", "subscription_id", "order_id", "account_id", "product_code", "quantity", "start_on", "ordered_at", "setup_exempt")
_INSERT_SUBSCRIPTIONS = unnest_insert(SUBSCRIPTION, _SUBSCRIPTION_COLUMNS, "ON CONFLICT (seller_id, subscription_id) DO NOTHING")


async def insert_subscriptions(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Many subscriptions (distinct seller and subscription ids) in one statement; one already
    stored keeps its first version."""
    if not rows:
        return
    await session.execute(_INSERT_SUBSCRIPTIONS, by_column(rows, _SUBSCRIPTION_COLUMNS))


_USAGE_COLUMNS = ("seller_id", "record_id", "account_id", "product_code", "quantity", "occurred_at", "cost", "cost_currency")
_INSERT_USAGE = unnest_insert(USAGE, _USAGE_COLUMNS, "ON CONFLICT (seller_id, record_id) DO NOTHING")


async def insert_usage(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Many usage records in one statement (one array per column, so one cached statement
    whatever the batch size); a record id already stored keeps its first version."""
    if not rows:
        return
    await session.execute(_INSERT_USAGE, by_column(rows, _USAGE_COLUMNS))


# A slice of a seller's accounts, as the bill run rates them: account ids from the first
# (inclusive; None: from the lowest) to the second (exclusive; None: to the highest).
AccountRange = tuple[str | None, str | None]


def _accounts(column: Any, account_id: str | None, between: AccountRange | None) -> ColumnElement[bool]:
    """The accounts a rating reads: one account (`account_id`), a slice of them (`between`), or all."""
    lo, hi = between or (None, None)
    clause: ColumnElement[bool] = true()
    if lo is not None:
        clause = clause & (column >= lo)
    if hi is not None:
        clause = clause & (column < hi)
    if account_id is not None:
        clause = clause & (column == account_id)
    return clause


async def account_slices(session: AsyncSession, seller_id: str, starts_by: date, per_slice: int) -> list[AccountRange]:
    """The seller's accounts cut into consecutive ranges of about `per_slice` subscriptions each
    (an account is never split), covering every account id, those without subscriptions too."""
    numbered = (
        select_scoped(SUBSCRIPTION, seller_id, SUBSCRIPTION.c.account_id, func.row_number().over(order_by=SUBSCRIPTION.c.account_id).label("n"))
        .where(SUBSCRIPTION.c.start_on <= starts_by)
        .subquery()
    )
    query = select(numbered.c.account_id).where(numbered.c.n % per_slice == 0).distinct().order_by(numbered.c.account_id)
    bounds: list[str | None] = [None, *(await session.execute(query)).scalars().all(), None]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


async def buyers(session: AsyncSession, seller_id: str, account_id: str | None = None, *, between: AccountRange | None = None) -> list[Any]:
    query = select_scoped(BUYER, seller_id).where(_accounts(BUYER.c.account_id, account_id, between))
    return list((await session.execute(query)).all())


async def subscriptions(
    session: AsyncSession, seller_id: str, starts_by: date, account_id: str | None = None, *, between: AccountRange | None = None
) -> list[Any]:
    """Subscriptions that started on or before `starts_by` (whether still running is decided
    from their changes)."""
    query = select_scoped(SUBSCRIPTION, seller_id).where(SUBSCRIPTION.c.start_on <= starts_by, _accounts(SUBSCRIPTION.c.account_id, account_id, between))
    return list((await session.execute(query.order_by(SUBSCRIPTION.c.subscription_id))).all())


def _ids(values: Iterable[str], name: str = "ids") -> Any:
    """Ids as one array parameter (`= ANY(:ids)`): one bind whatever their number, where an `IN`
    list binds one parameter per id and passes asyncpg's 32,767 at that many ids."""
    return any_(bindparam(name, list(values), type_=ARRAY(Text)))


async def changes(session: AsyncSession, seller_id: str, subscription_ids: Iterable[str]) -> list[Any]:
    ids = list(subscription_ids)
    if not ids:
        return []
    query = select_scoped(CHANGE, seller_id).where(CHANGE.c.subscription_id == _ids(ids))
    return list((await session.execute(query)).all())


async def usage_before(
    session: AsyncSession,
    seller_id: str,
    before: datetime,
    run_id: str,
    account_id: str | None = None,
    *,
    wholesale: bool = False,
    between: AccountRange | None = None,
) -> list[Any]:
    """Usage before `before` not billed by another run of the tier (the period's own, and late usage)."""
    billed = USAGE.c.wholesale_bill_run_id if wholesale else USAGE.c.bill_run_id
    query = select_scoped(USAGE, seller_id).where(
        USAGE.c.occurred_at < before,
        or_(billed.is_(None), billed == run_id),
        _accounts(USAGE.c.account_id, account_id, between),
    )
    return list((await session.execute(query)).all())


async def observations_before(
    session: AsyncSession, seller_id: str, before: datetime, account_id: str | None = None, *, between: AccountRange | None = None
) -> list[Any]:
    """Every observation before `before`: the period's, and the history the rules read."""
    query = select_scoped(OBSERVATION, seller_id).where(OBSERVATION.c.observed_at < before, _accounts(OBSERVATION.c.account_id, account_id, between))
    return list((await session.execute(query)).all())


async def mark_billed(
    session: AsyncSession, table: Table, id_column: str, seller_id: str, ids: Iterable[str], run_id: str, column: str = "bill_run_id"
) -> None:
    """Stamp the records a run billed, by id (one statement, the ids one array parameter): a
    record that arrived during the run stays unbilled."""
    ids = list(ids)
    if not ids:
        return
    await session.execute(scoped(update(table), table, seller_id).where(table.c[id_column] == _ids(ids)).values({column: run_id}))


async def subscription(session: AsyncSession, seller_id: str, subscription_id: str) -> Any:
    query = select_scoped(SUBSCRIPTION, seller_id).where(SUBSCRIPTION.c.subscription_id == subscription_id)
    return (await session.execute(query)).first()


async def policies(session: AsyncSession, seller_id: str, subscription_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    query = select_scoped(POLICY, seller_id)
    if subscription_ids is not None:
        query = query.where(POLICY.c.subscription_id == _ids(subscription_ids))
    return {row.subscription_id: row.policy for row in (await session.execute(query)).all()}


async def upsert_policy(session: AsyncSession, row: dict[str, Any]) -> None:
    stmt = pg_insert(POLICY).values(**row)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["seller_id", "subscription_id"],
            set_={"policy": stmt.excluded.policy, "updated_at": stmt.excluded.updated_at},
            where=POLICY.c.policy.is_distinct_from(stmt.excluded.policy),
        )
    )
