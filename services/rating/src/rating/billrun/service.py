"""Closing a period: rate it once and emit PeriodClosed per buyer, in the same transaction as the
run record. A partner's run bills its customers at its retail prices (tier `retail`); the
distributor's run bills each partner (a customer of the distributor whose external id is the
partner's tenant id) for its own licences and, at wholesale prices, for every end customer's
rated quantities (tier `wholesale`). Also the live view of an account's charges and the margin
report (the same rating, not stored, not emitted)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from opentelemetry import trace
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import BillRunClosed, ChargesRated, CloudEvent, Money, PeriodClosed, RatedLine, derived_event_id
from billing_events import account_id as billing_account_id
from billing_runtime.api import decode_keyset, encode_cursor
from billing_runtime.collector import collector_paused
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from rating.billrun import rating
from rating.billrun import repository as repo
from rating.billrun.rating import Buyer, Rating, Unrated
from rating.billrun.schemas import BillRunOut, BillRunPage, ChargesOut, MarginLine, MarginOut, UnpricedCurrencyOut, UnratedOut
from rating.catalogue.service import PriceBook, SellerTerms, price_book, seller_terms
from rating.discount.service import discounts_for_rating
from rating.errors import AccountNotFound, BillRunNotFound, PeriodNotEnded
from rating.period import Period
from rating.policy import BillingPolicy
from rating.schedule import Change, schedule
from rating.subscription import repository as projections

tracer = trace.get_tracer(__name__)

BILL_RUNS = Counter("billing_bill_runs_total", "Bill run requests, by outcome", ["outcome"])
RATED_LINES = Counter("billing_rated_lines_total", "Lines rated by bill runs, by tier", ["tier"])
UNRATED = Counter("billing_unrated_charges_total", "Charges a bill run could not rate, by reason", ["reason"])
start_at_zero(BILL_RUNS, ("created", "repeated", "period_not_ended"))
start_at_zero(UNRATED, [reason.value for reason in rating.UnratedReason])
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BILL_RUN_SECONDS = Histogram("billing_bill_run_duration_seconds", "Time to rate and close one seller's period", buckets=_SECONDS)
CLOSE_PHASE_SECONDS = Histogram("billing_bill_run_phase_seconds", "Time of each phase of closing a period (rate, write, emit)", ["phase"], buckets=_SECONDS)
# A retail close rates and writes this many subscriptions' accounts at a time (memory: one slice).
# The process's peak is its heap before the close plus one slice's working set, which the
# allocator keeps afterwards: 200,000 subscriptions in bench/rating_close.py peaked at 230 MB with
# 10,000 a slice, 188 MB with 5,000, 165 MB with 2,500, for 5% more CPU (15.3 → 16.2 s).
SLICE_SUBSCRIPTIONS = 2_500
UNPRICED_BUYERS = Counter(
    "billing_bill_run_unpriced_buyers_total",
    "Buyers a bill run could not bill in full because a product has no price in their currency, by that currency",
    ["currency"],
)
GC_PAUSED_SECONDS = Counter(
    "billing_bill_run_gc_paused_seconds", "Time bill runs paused the cyclic garbage collector (a close's slices, rated, written and emitted)"
)
CHARGES_ANNOUNCED = Counter(
    "billing_charges_announced_total", "Buyer accounts whose period's charges were announced ahead of the bill run (ChargesRated), by tier", ["tier"]
)
start_at_zero(CHARGES_ANNOUNCED, ("wholesale",))
CHARGES_WRITTEN = Counter("billing_bill_run_charges_written_total", "Rated charges written by bill runs, by tier", ["tier"])


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """A phase of a close: its own span (`close_period.<name>`) and its time in the histogram."""
    started = time.perf_counter()
    with tracer.start_as_current_span(f"close_period.{name}"):
        yield
    CLOSE_PHASE_SECONDS.labels(name).observe(time.perf_counter() - started)


def bill_run_id(seller_id: str, period: Period) -> str:
    """The fixed identity of a seller's run for a period: running it again finds the same run."""
    return derived_event_id("bill_run", seller_id, period.label)


def partner_account_id(distributor_id: str, partner_id: str) -> str:
    """A partner's billing account at the distributor: the distributor's customer whose external
    id is the partner's tenant id."""
    return billing_account_id(distributor_id, partner_id)


@dataclass(frozen=True)
class Closing:
    """What a run emits: lines per buyer account, with the usage it billed."""

    tier: str
    lines: dict[str, list[RatedLine]]
    currencies: dict[str, str]
    unrated: list[Unrated]
    billed_usage: dict[tuple[str, str], list[str]]  # (seller of the usage, column) → record ids
    billed_observations: dict[str, list[str]]  # seller → observation ids (the seller's own run)

    @property
    def line_count(self) -> int:
        return sum(len(v) for v in self.lines.values())


async def close_period(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, period_label: str, distributor_id: str | None) -> BillRunOut:
    """Close the seller's period (a `YYYY-MM` in its time zone): rate it and emit PeriodClosed per
    buyer, once. A repeat (or a concurrent duplicate) returns the first run with `created=False`."""
    terms = await seller_terms(session, seller_id)
    period = Period.parse(period_label, terms.tz)
    attributes = {"billing.seller_id": seller_id, "billing.period": period.label}
    with tracer.start_as_current_span("close_period", attributes=attributes) as span:
        if not period.has_ended(runtime.clock.now().astimezone(terms.tz).date()):
            BILL_RUNS.labels("period_not_ended").inc()
            raise PeriodNotEnded(f"period {period.label} ends on {period.end}; it can be closed from the day after")
        run_id = bill_run_id(seller_id, period)
        tier: Literal["retail", "wholesale"] = "wholesale" if seller_id == distributor_id else "retail"
        span.set_attribute("billing.bill_run_id", run_id)
        started = time.perf_counter()
        claimed = await repo.claim_run(
            session,
            {
                "id": run_id,
                "seller_id": seller_id,
                "period": period.label,
                "period_start": period.start,
                "period_end": period.end,
                "tier": tier,
                "buyers": 0,
                "lines": 0,
                "unrated": [],
                "created_at": runtime.clock.now(),
            },
        )
        if not claimed:
            BILL_RUNS.labels("repeated").inc()
            return _run_out(await repo.get_run(session, seller_id, run_id), created=False)

        buyers = lines = charges_written = 0
        unrated_found: set[Unrated] = set()
        # Over the whole close, not only its synchronous stretches (`collector_paused()` without a count): objects rated
        # while paused are still young when collection resumes, so pausing less defers the cost.
        with collector_paused(GC_PAUSED_SECONDS):
            async for closing in _closings(session, seller_id, distributor_id, tier, period, run_id, terms):
                with _phase("write"):
                    charges_written += await repo.add_charges(session, _charge_columns(seller_id, run_id, closing))
                    for (owner, column), ids in closing.billed_usage.items():
                        await projections.mark_billed(session, projections.USAGE, "record_id", owner, ids, run_id, column)
                    for owner, ids in closing.billed_observations.items():
                        await projections.mark_billed(session, projections.OBSERVATION, "observation_id", owner, ids, run_id)
                with _phase("emit"):
                    # One INSERT … unnest for the slice's PeriodClosed events (not one parameter set each).
                    await runtime.outbox.add_many(session, _period_closed(runtime, seller_id, run_id, period, closing))
                buyers += len(closing.lines)
                lines += closing.line_count
                unrated_found.update(closing.unrated)
                del closing  # the slice's lines freed now, before the next is rated (and before collection resumes)
        unrated = [_unrated_out(u).model_dump() for u in sorted(unrated_found)]
        await repo.finish_run(session, run_id, buyers, lines, unrated)
        # The period is closed for everyone once this commits: usage-ingest refuses historic imports into it.
        closed = BillRunClosed(
            bill_run_id=run_id, seller_id=seller_id, tier=tier, period_start=period.start, period_end=period.end, closed_at=runtime.clock.now()
        )
        await runtime.outbox.add(session, runtime.event(closed, tenant=seller_id, event_id=derived_event_id("bill_run_closed", run_id), subject=run_id))
        BILL_RUNS.labels("created").inc()
        RATED_LINES.labels(tier).inc(lines)
        for u in unrated_found:
            UNRATED.labels(u.reason.value).inc()
        gaps = _unpriced_currencies(unrated)
        for gap in gaps:
            UNPRICED_BUYERS.labels(gap.currency).inc(len(gap.account_ids))
        span.set_attribute("billing.unpriced_buyers", sum(len(gap.account_ids) for gap in gaps))
        CHARGES_WRITTEN.labels(tier).inc(charges_written)
        BILL_RUN_SECONDS.observe(time.perf_counter() - started)
        span.set_attribute("billing.buyers", buyers)
        span.set_attribute("billing.lines", lines)
        span.set_attribute("billing.charges_written", charges_written)
        return _run_out(await repo.get_run(session, seller_id, run_id), created=True)


async def announce_charges(runtime: ServiceRuntime, session: AsyncSession, distributor_id: str, period: Period, terms: SellerTerms, rated_on: date) -> int:
    """Seed 001's first business day: the distributor's period as rated so far, one ChargesRated per
    partner account (the wholesale tier: what the partner's invoice will bill, rated as the bill
    run rates it, nothing stored or marked billed), so that invoicing sends the partner its
    comparison report ahead of the invoice. Once per period (`charges_preview`): returns the
    accounts announced, 0 when they were already (or there is nothing to announce)."""
    attributes = {"billing.seller_id": distributor_id, "billing.period": period.label}
    with tracer.start_as_current_span("announce_charges", attributes=attributes) as span:
        if await repo.preview_claimed(session, distributor_id, period.label):
            return 0  # announced before: not rated again on every pass
        run_id = bill_run_id(distributor_id, period)
        with collector_paused(GC_PAUSED_SECONDS):
            closing = await rate_wholesale(session, distributor_id, period, run_id, terms)
        if not closing.lines:
            return 0  # nothing to announce yet (not claimed: a later pass may find charges)
        bill_run_on = terms.issue_date(period)
        claimed = await repo.claim_preview(
            session,
            {
                "seller_id": distributor_id,
                "period": period.label,
                "accounts": len(closing.lines),
                "rated_on": rated_on,
                "bill_run_on": bill_run_on,
                "created_at": runtime.clock.now(),
            },
        )
        if not claimed:
            return 0
        events = [
            runtime.event(
                ChargesRated(
                    account_id=account,
                    seller_id=distributor_id,
                    period_start=period.start,
                    period_end=period.end,
                    currency=closing.currencies[account],
                    lines=lines,
                    tier="wholesale",
                    rated_on=rated_on,
                    bill_run_on=bill_run_on,
                ),
                tenant=distributor_id,
                event_id=derived_event_id("charges_rated", distributor_id, period.label, account),
                subject=account,
            )
            for account, lines in sorted(closing.lines.items())
        ]
        await runtime.outbox.add_many(session, events)
        CHARGES_ANNOUNCED.labels("wholesale").inc(len(events))
        span.set_attribute("billing.accounts", len(events))
        return len(events)


async def _closings(
    session: AsyncSession, seller_id: str, distributor_id: str | None, tier: str, period: Period, run_id: str, terms: SellerTerms
) -> AsyncIterator[Closing]:
    """The run's lines, a slice of the seller's accounts at a time (about SLICE_SUBSCRIPTIONS
    subscriptions each), so that a seller's close holds one slice in memory, not its whole book.
    Accounts rate independently (every rule reads one account's subscriptions, usage, counts and
    discounts), so the slices bill exactly what one pass would. The wholesale run is one pass."""
    if tier == "wholesale":
        assert distributor_id is not None
        with _phase("rate"):
            closing = await rate_wholesale(session, distributor_id, period, run_id, terms)
        yield closing
        return
    for between in await projections.account_slices(session, seller_id, period.next().end, SLICE_SUBSCRIPTIONS):
        with _phase("rate"):
            result = await rate_retail(session, seller_id, distributor_id, period, run_id, terms, between=between)
        yield Closing(
            "retail",
            {a: list(v) for a, v in result.lines.items()},
            dict(result.currencies),
            list(result.unrated),
            {(seller_id, "bill_run_id"): list(result.billed_usage)},
            {seller_id: list(result.billed_observations)},
        )


def _period_closed(runtime: ServiceRuntime, seller_id: str, run_id: str, period: Period, closing: Closing) -> list[CloudEvent[Any]]:
    return [
        runtime.event(
            PeriodClosed(
                bill_run_id=run_id,
                seller_id=seller_id,
                buyer_account_id=account,
                period_start=period.start,
                period_end=period.end,
                currency=closing.currencies[account],
                lines=lines,
                tier=closing.tier,
            ),
            tenant=seller_id,
            event_id=derived_event_id("period_closed", run_id, account),
            subject=account,
        )
        for account, lines in sorted(closing.lines.items())
    ]


async def get_bill_run(session: AsyncSession, seller_id: str, run_id: str) -> BillRunOut:
    row = await repo.get_run(session, seller_id, run_id)
    if row is None:
        raise BillRunNotFound(f"no bill run {run_id!r}")
    return _run_out(row, created=False)


async def list_bill_runs(
    session: AsyncSession,
    seller_id: str,
    *,
    period_from: str | None,
    period_to: str | None,
    tier: str | None,
    cursor: str | None,
    limit: int,
) -> BillRunPage:
    """The seller's runs, newest period first, a page at a time."""
    after = decode_keyset(cursor, str)
    rows = await repo.list_runs(
        session,
        seller_id,
        period_from=period_from,
        period_to=period_to,
        tier=tier,
        after=after,
        limit=limit + 1,
    )
    items = [_run_out(row, created=False) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].period, rows[limit - 1].id) if len(rows) > limit else None
    return BillRunPage(items=items, limit=limit, next_cursor=next_cursor)


async def current_charges(
    session: AsyncSession, seller_id: str, distributor_id: str | None, account_id: str, period_label: str | None, now: datetime
) -> ChargesOut:
    """What a bill run would bill this account now (live spend; nothing stored or emitted). For
    the distributor and a partner's account: the partner's wholesale charges."""
    found = await projections.buyers(session, seller_id, account_id)
    if not found:
        raise AccountNotFound(f"no customer account {account_id!r} of this seller")
    terms = await seller_terms(session, seller_id)
    period = Period.parse(period_label, terms.tz) if period_label is not None else Period.of_instant(now, terms.tz)
    run_id = bill_run_id(seller_id, period)
    if seller_id == distributor_id:
        closing = await rate_wholesale(session, seller_id, period, run_id, terms, only=account_id)
        lines, unrated = closing.lines.get(account_id, []), closing.unrated
    else:
        result = await rate_retail(session, seller_id, distributor_id, period, run_id, terms, account_id=account_id)
        lines, unrated = list(result.lines.get(account_id, ())), list(result.unrated)
    currency = found[0].currency
    closed = await repo.get_run(session, seller_id, run_id)
    return ChargesOut(
        account_id=account_id,
        seller_id=seller_id,
        period=period.label,
        period_start=period.start,
        period_end=period.end,
        currency=currency,
        bill_run_id=closed.id if closed is not None else None,
        lines=lines,
        total=Money.of(sum((line.amount.amount for line in lines), Decimal(0)), currency),
        unrated=[_unrated_out(u) for u in sorted(set(unrated))],
    )


async def margin_report(session: AsyncSession, partner_id: str, distributor_id: str | None, period_label: str) -> MarginOut:
    """Retail − wholesale per end customer and product for a partner's period (BILLING-RULES §4)."""
    terms = await seller_terms(session, partner_id)
    period = Period.parse(period_label, terms.tz)
    run_id = bill_run_id(partner_id, period)
    retail = await rate_retail(session, partner_id, distributor_id, period, run_id, terms)
    wholesale_lines: dict[str, list[RatedLine]] = {}
    if distributor_id is not None:
        d_terms = await seller_terms(session, distributor_id)
        partner = await _partner_buyer(session, distributor_id, partner_id)
        if partner is not None:
            result = await _partner_book(session, distributor_id, partner_id, partner, period, bill_run_id(distributor_id, period), d_terms, closed=frozenset())
            wholesale_lines = {k: list(v) for k, v in result.lines.items()}
    names = {b.account_id: b.name for b in await projections.buyers(session, partner_id)}
    totals: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: {"retail": Decimal(0), "wholesale": Decimal(0)})
    currencies: dict[tuple[str, str], set[str]] = defaultdict(set)
    for tier, source in (("retail", retail.lines), ("wholesale", wholesale_lines)):
        for account, lines in source.items():
            for line in lines:
                key = (account, line.product_code)
                totals[key][tier] += line.amount.amount
                currencies[key].add(line.amount.currency)
    items = [
        MarginLine(
            end_customer_id=account,
            end_customer_name=names.get(account),
            product_code=code,
            currency="/".join(sorted(currencies[(account, code)])),
            retail=str(t["retail"]),
            wholesale=str(t["wholesale"]),
            margin=str(t["retail"] - t["wholesale"]) if len(currencies[(account, code)]) == 1 else None,
        )
        for (account, code), t in sorted(totals.items())
    ]
    return MarginOut(partner_id=partner_id, period=period.label, lines=items)


# --- loading and rating ------------------------------------------------------------------------


async def rate_retail(
    session: AsyncSession,
    seller_id: str,
    distributor_id: str | None,
    period: Period,
    run_id: str,
    terms: SellerTerms,
    *,
    account_id: str | None = None,
    between: projections.AccountRange | None = None,
) -> Rating:
    """The seller's own book at its own prices (a partner's customers, or the distributor's
    partners); with `between`, the accounts of that range only."""
    book = await price_book(session, seller_id, distributor_id)
    closed = await repo.closed_periods(session, seller_id)
    inputs = await _inputs(session, seller_id, period, run_id, terms, book, account_id=account_id, wholesale=False, between=between)
    discounts = await discounts_for_rating(session, seller_id)
    with collector_paused():
        return rating.rate_period(run_id, period, products=book.products, price_of=book.retail, closed=closed, discounts=discounts, **inputs)


async def rate_wholesale(session: AsyncSession, distributor_id: str, period: Period, run_id: str, terms: SellerTerms, *, only: str | None = None) -> Closing:
    """The distributor's run: for each partner account, its own purchases at the distributor's
    prices and its customers' quantities at wholesale, each attributed to the end customer."""
    own = await rate_retail(session, distributor_id, distributor_id, period, run_id, terms, account_id=only)
    lines: dict[str, list[RatedLine]] = {a: list(v) for a, v in own.lines.items()}
    currencies = dict(own.currencies)
    unrated = list(own.unrated)
    billed_usage: dict[tuple[str, str], list[str]] = {(distributor_id, "bill_run_id"): list(own.billed_usage)}
    billed_obs: dict[str, list[str]] = {distributor_id: list(own.billed_observations)}
    closed = await repo.closed_periods(session, distributor_id)
    for partner in await projections.buyers(session, distributor_id, only):
        buyer = Buyer(partner.account_id, partner.currency, partner.name)
        result = await _partner_book(session, distributor_id, partner.external_id, buyer, period, run_id, terms, closed)
        for end_customer_lines in result.lines.values():
            lines.setdefault(partner.account_id, []).extend(end_customer_lines)
        if result.lines:
            currencies[partner.account_id] = partner.currency
        unrated += result.unrated
        billed_usage[(partner.external_id, "wholesale_bill_run_id")] = list(result.billed_usage)
    return Closing("wholesale", lines, currencies, unrated, billed_usage, billed_obs)


async def _partner_buyer(session: AsyncSession, distributor_id: str, partner_id: str) -> Buyer | None:
    found = await projections.buyers(session, distributor_id, partner_account_id(distributor_id, partner_id))
    return Buyer(found[0].account_id, found[0].currency, found[0].name) if found else None


async def _partner_book(
    session: AsyncSession,
    distributor_id: str,
    partner_id: str,
    bill_to: Buyer,
    period: Period,
    run_id: str,
    terms: SellerTerms,
    closed: frozenset[str] | dict[str, datetime],
) -> Rating:
    """A partner's customers rated at the distributor's wholesale prices, billed to the partner.
    Periods and business days are the partner's (its customers' orders follow its calendar)."""
    partner_terms = await seller_terms(session, partner_id)
    book = await price_book(session, partner_id, distributor_id)
    local = Period.parse(period.label, partner_terms.tz)
    inputs = await _inputs(session, partner_id, local, run_id, partner_terms, book, wholesale=True)
    with collector_paused():
        return rating.rate_period(run_id, local, products=book.products, price_of=book.wholesale, closed=closed, bill_to=bill_to, **inputs)


async def _inputs(
    session: AsyncSession,
    seller_id: str,
    period: Period,
    run_id: str,
    terms: SellerTerms,
    book: PriceBook,
    *,
    account_id: str | None = None,
    wholesale: bool,
    between: projections.AccountRange | None = None,
) -> dict[str, Any]:
    buyers = await projections.buyers(session, seller_id, account_id, between=between)
    # Advance billing bills the next period in this run: load what starts by its end.
    subscriptions = await projections.subscriptions(session, seller_id, period.next().end, account_id, between=between)
    changes = await projections.changes(session, seller_id, [s.subscription_id for s in subscriptions])
    overrides = await projections.policies(session, seller_id, [s.subscription_id for s in subscriptions])
    usage = await projections.usage_before(session, seller_id, period.ends_before, run_id, account_id, wholesale=wholesale, between=between)
    observations = await projections.observations_before(session, seller_id, period.ends_before, account_id, between=between)
    with collector_paused():
        return _rating_inputs(buyers, subscriptions, changes, overrides, usage, observations, book, terms)


def _rating_inputs(
    buyers: list[Any],
    subscriptions: list[Any],
    changes: list[Any],
    overrides: dict[str, dict[str, Any]],
    usage: list[Any],
    observations: list[Any],
    book: PriceBook,
    terms: SellerTerms,
) -> dict[str, Any]:
    return {
        "buyers": [Buyer(b.account_id, b.currency, b.name) for b in buyers],
        "subscriptions": subscription_terms(subscriptions, changes, overrides, book, terms),
        "usage": [rating.Usage(u.record_id, u.account_id, u.product_code, u.quantity, u.occurred_at, u.cost) for u in usage],
        "observations": [
            rating.Observation(
                o.observation_id,
                o.account_id,
                o.product_code,
                o.quantity,
                o.observed_at,
                tuple((i["item_id"], i["state"]) for i in o.items) if o.items is not None else None,
            )
            for o in observations
        ],
    }


def subscription_terms(
    subscriptions: list[Any], changes: list[Any], overrides: dict[str, dict[str, Any]], book: PriceBook, terms: SellerTerms
) -> list[rating.Subscription]:
    by_subscription: dict[str, list[Any]] = defaultdict(list)
    for change in changes:
        by_subscription[change.subscription_id].append(change)
    out = []
    for sub in subscriptions:
        product = book.products.get(sub.product_code)
        if product is None:
            policy = BillingPolicy()
        else:
            policy = product.policy.overridden(overrides.get(sub.subscription_id))
        own = by_subscription.get(sub.subscription_id, [])
        planned = schedule(
            subscription_id=sub.subscription_id,
            quantity=sub.quantity,
            start_on=sub.start_on,
            ordered_at=sub.ordered_at,
            order_id=sub.order_id,
            changes=tuple(Change(c.order_id, c.requested_at, c.effective_on, c.quantity if c.kind == "quantity" else None) for c in own),
            policy=policy,
            calendar=terms.calendar,
            tz=terms.tz,
        )
        out.append(rating.Subscription(sub.subscription_id, sub.account_id, sub.product_code, planned, policy, sub.setup_exempt))
    return out


def _charge_columns(seller_id: str, run_id: str, closing: Closing) -> dict[str, list[Any]]:
    """The run's lines as rated charges, column by column (what `repo.add_charges` sends)."""
    columns: dict[str, list[Any]] = {name: [] for name in repo.CHARGE_COLUMNS}
    for account, lines in closing.lines.items():
        for line in lines:
            columns["line_id"].append(line.line_id)
            columns["account_id"].append(account)
            columns["end_customer_id"].append(line.end_customer_id)
            columns["product_code"].append(line.product_code)
            columns["description"].append(line.description)
            columns["category"].append(line.category)
            columns["service_period_start"].append(line.service_period_start)
            columns["service_period_end"].append(line.service_period_end)
            columns["quantity"].append(line.quantity)
            columns["unit_price"].append(line.unit_price.amount)
            columns["amount"].append(line.amount.amount)
            columns["currency"].append(line.amount.currency)
            columns["quantity_rule"].append(line.quantity_rule)
            columns["kind"].append(line.kind)
            columns["late"].append(line.late)
    count = len(columns["line_id"])
    columns["bill_run_id"] = [run_id] * count
    columns["seller_id"] = [seller_id] * count
    return columns


def _unrated_out(u: Unrated) -> UnratedOut:
    return UnratedOut(account_id=u.account_id, product_code=u.product_code, reason=u.reason.value, currency=u.currency, priced_in=u.priced_in)


def _unpriced_currencies(unrated: list[dict[str, Any]]) -> list[UnpricedCurrencyOut]:
    """The run's currency_mismatch entries by the buyer's currency that has no price."""
    accounts: dict[str, set[str]] = defaultdict(set)
    products: dict[str, set[str]] = defaultdict(set)
    for u in unrated:
        if u["reason"] == rating.UnratedReason.CURRENCY_MISMATCH.value and u.get("currency"):
            accounts[u["currency"]].add(u["account_id"])
            products[u["currency"]].add(u["product_code"])
    return [UnpricedCurrencyOut(currency=c, account_ids=sorted(accounts[c]), product_codes=sorted(products[c])) for c in sorted(accounts)]


def _run_out(row: Any, *, created: bool) -> BillRunOut:
    return BillRunOut(
        bill_run_id=row.id,
        seller_id=row.seller_id,
        period=row.period,
        period_start=row.period_start,
        period_end=row.period_end,
        tier=row.tier,
        created=created,
        buyers=row.buyers,
        lines=row.lines,
        unrated=[UnratedOut.model_validate(u) for u in row.unrated],
        unpriced_currencies=_unpriced_currencies(row.unrated),
    )
