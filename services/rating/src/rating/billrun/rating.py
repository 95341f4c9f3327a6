"""The rating function: what a bill run for one period bills, from the catalogue, one price list,
the subscriptions (as scheduled by their policy), the usage and the counts. Pure: no database,
no clock, no I/O.

The same function rates both tiers: with the seller's own price list for its buyers (retail),
and with the distributor's wholesale list for a partner's book, every line then billed to the
partner and attributed to its end customer. Amounts are quantity × unit price, exact and
unrounded (invoicing rounds once). What cannot be rated is reported as `Unrated`, never raised.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

from billing_events import Money, RatedLine, derived_event_id
from rating.period import Period, local_midnight
from rating.policy import BillingPolicy, Interval, Proration, QuantityRule, Timing
from rating.pricing import PriceModel, PriceModelKind, Segment
from rating.schedule import Schedule

# Enough digits that sums of millions of fine-grained usage quantities stay exact.
PRECISION = 60


class UnratedReason(StrEnum):
    UNKNOWN_ACCOUNT = "unknown_account"  # no CustomerUpserted seen for the buyer yet
    UNKNOWN_PRODUCT = "unknown_product"  # not in the seller's (or the distributor's) catalogue
    NO_PRICE = "no_price"  # no price in force for the service period in this tier's list
    CURRENCY_MISMATCH = "currency_mismatch"  # no price in the buyer's (invoice) currency, only in another
    RULE_MISMATCH = "rule_mismatch"  # usage or counts for a product whose rule does not bill them
    NO_COST = "no_cost"  # cost-plus pricing for usage that carries no cost


@dataclass(frozen=True)
class ProductInfo:
    code: str
    name: str
    category: str | None
    unit: str | None
    tax_category: str | None
    kind: str  # recurring | usage | one_time | project_work | shipping
    policy: BillingPolicy


@dataclass(frozen=True)
class Price:
    model: PriceModel
    currency: str
    base: PriceModel | None = None  # the wholesale model a markup applies to


@dataclass(frozen=True)
class Buyer:
    account_id: str
    currency: str
    name: str = ""


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    account_id: str
    product_code: str
    schedule: Schedule
    policy: BillingPolicy
    setup_exempt: bool = False


@dataclass(frozen=True)
class Usage:
    record_id: str
    account_id: str
    product_code: str
    quantity: Decimal
    occurred_at: datetime
    cost: Decimal | None = None


@dataclass(frozen=True)
class Observation:
    observation_id: str
    account_id: str
    product_code: str
    quantity: Decimal | None
    observed_at: datetime
    items: tuple[tuple[str, str], ...] | None = None  # (item id, active|deleted)

    @property
    def count(self) -> Decimal:
        if self.quantity is not None:
            return self.quantity
        return Decimal(sum(1 for _, state in self.items or () if state == "active"))


@dataclass(frozen=True)
class Discount:
    discount_id: str
    scope: str  # product | invoice (a subscription's discount is resolved to its account and product)
    account_id: str | None
    target: str | None  # subscription id or product code
    percent: Decimal | None
    amount: Decimal | None
    first_period: Period
    periods: int | None  # None: open-ended

    def applies_in(self, period: Period) -> bool:
        offset = period.months_since(self.first_period)
        return offset >= 0 and (self.periods is None or offset < self.periods)


@dataclass(frozen=True, order=True)
class Unrated:
    account_id: str
    product_code: str
    reason: UnratedReason
    # currency_mismatch: the invoice currency that has no price, and the one(s) that do.
    currency: str | None = field(default=None, compare=False)
    priced_in: str | None = field(default=None, compare=False)


# A product's price for a service period in the buyer's invoice currency; when it has none in
# that currency, one in another (reported as currency_mismatch), else None (no_price).
PriceOf = Callable[[str, Period, str], Price | None]


@dataclass
class _Key:
    subscriptions: list[Subscription] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    late: dict[Period, list[Usage]] = field(default_factory=dict)
    observations: list[Observation] = field(default_factory=list)  # history up to the period's end


@dataclass(frozen=True)
class Quantity:
    """A quantity to price: the product, the service period it bills and how it was found."""

    product_code: str
    kind: str
    service: tuple[date, date]
    quantity: Decimal
    rule: str
    cost: Decimal | None = None
    fraction: tuple[int, int] | None = None  # daily proration: active days ÷ days in the period
    late: bool = False
    note: str | None = None
    subscription_id: str | None = None
    periods: int | None = None  # a true-up: how many periods were billed at the lower count


@dataclass(frozen=True)
class Rating:
    lines: dict[str, tuple[RatedLine, ...]]  # by account (the end customer in a wholesale book)
    currencies: dict[str, str]
    unrated: tuple[Unrated, ...]
    billed_usage: tuple[str, ...]  # record ids the lines include
    billed_observations: tuple[str, ...]  # observation ids whose count a line bills

    @property
    def line_count(self) -> int:
        return sum(len(lines) for lines in self.lines.values())


def line_id(run_id: str, account_id: str, product_code: str, *more: str) -> str:
    return derived_event_id("rated_line", run_id, account_id, product_code, *more)


def rate_period(
    run_id: str,
    period: Period,
    *,
    buyers: Iterable[Buyer],
    products: dict[str, ProductInfo],
    price_of: PriceOf,
    subscriptions: Iterable[Subscription] = (),
    usage: Iterable[Usage] = (),
    observations: Iterable[Observation] = (),
    closed: frozenset[str] | dict[str, datetime] = frozenset(),
    discounts: Iterable[Discount] = (),
    bill_to: Buyer | None = None,
) -> Rating:
    """Rate the run that closes `period`. Usage before the period is billed as late lines when its
    own period is in `closed` (and ignored otherwise); observations before the period are history
    (snapshot carry-forward, item states, true-up). With `bill_to`, every line is billed to it and
    attributed to its account as end customer (the wholesale tier)."""
    # When each closed period of the tier was closed: an order that arrived after decides late terms.
    closed_at: dict[str, datetime] = closed if isinstance(closed, dict) else {label: datetime.max.replace(tzinfo=UTC) for label in closed}
    run = _Run(run_id, period, {b.account_id: b for b in buyers}, products, price_of, closed_at, bill_to)
    keys = _inputs_by_key(period, subscriptions, usage, observations, closed)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for (account, code), found in sorted(keys.items()):
            _rate_key(run, account, code, found)
        _tell_twins_apart(run_id, run.lines, run.twins)
        discount_list = list(discounts)
        for account, found_lines in run.lines.items():
            found_lines.sort(key=lambda line: (line.product_code, line.service_period_start, line.kind != "recurring", line.kind, line.service_period_end))
            found_lines.extend(_discount_lines(run_id, period, account, found_lines, discount_list, bill_to, run.buyers[account]))
    return Rating(
        lines={account: tuple(found) for account, found in sorted(run.lines.items()) if found},
        currencies={account: (bill_to or run.buyers[account]).currency for account, found in run.lines.items() if found},
        unrated=tuple(sorted(run.unrated)),
        billed_usage=tuple(sorted(set(run.billed_usage))),
        billed_observations=tuple(sorted(set(run.billed_observations))),
    )


@dataclass
class _Run:
    """One rating's inputs shared by every account and product, and what it has found so far."""

    run_id: str
    period: Period
    buyers: dict[str, Buyer]
    products: dict[str, ProductInfo]
    price_of: PriceOf
    closed_at: dict[str, datetime]
    bill_to: Buyer | None
    lines: dict[str, list[RatedLine]] = field(default_factory=lambda: defaultdict(list))
    unrated: set[Unrated] = field(default_factory=set)
    billed_usage: list[str] = field(default_factory=list)
    billed_observations: list[str] = field(default_factory=list)
    # Lines by their id, each with what it was rated from (see _tell_twins_apart).
    twins: dict[str, list[tuple[RatedLine, str, Quantity, int]]] = field(default_factory=lambda: defaultdict(list))


def _inputs_by_key(
    period: Period,
    subscriptions: Iterable[Subscription],
    usage: Iterable[Usage],
    observations: Iterable[Observation],
    closed: frozenset[str] | dict[str, datetime],
) -> dict[tuple[str, str], _Key]:
    """The run's inputs by (account, product): subscriptions, the period's usage, earlier usage of
    closed periods (late), and observations up to the period's end (history)."""
    keys: dict[tuple[str, str], _Key] = defaultdict(_Key)
    for sub in subscriptions:
        keys[(sub.account_id, sub.product_code)].subscriptions.append(sub)
    for record in usage:
        if period.contains(record.occurred_at):
            keys[(record.account_id, record.product_code)].usage.append(record)
        elif record.occurred_at < period.starts_at:
            own = Period.of_instant(record.occurred_at, period.tz)
            if own.label in closed:
                keys[(record.account_id, record.product_code)].late.setdefault(own, []).append(record)
    for obs in observations:
        if obs.observed_at < period.ends_before:
            keys[(obs.account_id, obs.product_code)].observations.append(obs)
    return keys


def _rate_key(run: _Run, account: str, code: str, found: _Key) -> None:
    """Rate one account's product: its quantities by the product's rule, its setup fees, each
    priced into lines; an unknown buyer or product is reported when there is something to bill."""
    buyer = run.buyers.get(account)
    product = run.products.get(code)
    if buyer is None or product is None:
        if _has_inputs(found, run.period):
            run.unrated.add(Unrated(account, code, UnratedReason.UNKNOWN_ACCOUNT if buyer is None else UnratedReason.UNKNOWN_PRODUCT))
        return
    quantities, used_usage, used_obs, mismatch = _quantities(run.period, product, found, run.closed_at)
    if mismatch:
        run.unrated.add(Unrated(account, code, UnratedReason.RULE_MISMATCH))
    quantities += setup_fees(run.period, found.subscriptions)
    priced = [_price_quantity(run, account, buyer, q) for q in quantities]
    if any(priced):
        run.billed_usage.extend(used_usage)
        run.billed_observations.extend(used_obs)


def _has_inputs(found: _Key, period: Period) -> bool:
    """Whether an account's product has anything this run would bill: usage, late usage, a count
    in the period, or a subscription billed in it or ordered in it."""
    return bool(found.usage or found.late) or _observed_in(found, period) or any(_bills(s, period) for s in found.subscriptions)


def _price_quantity(run: _Run, account: str, buyer: Buyer, q: Quantity) -> bool:
    """Price one quantity in the invoice's currency into the run's lines; whether any line came of
    it (what cannot be priced is reported in `unrated`)."""
    target = run.products.get(q.product_code)
    if target is None:
        run.unrated.add(Unrated(account, q.product_code, UnratedReason.UNKNOWN_PRODUCT))
        return False
    price = _price_in_currency(run, account, q, (run.bill_to or buyer).currency)
    if price is None:
        return False
    segments = _price(q, price)
    if segments is None:
        run.unrated.add(Unrated(account, q.product_code, UnratedReason.NO_COST))
        return False
    for index, segment in enumerate(segments):
        line = _line(run.run_id, account, buyer, target, q, segment, index, price.currency, run.bill_to)
        run.lines[account].append(line)
        run.twins[line.line_id].append((line, account, q, index))
    return bool(segments)


def _price_in_currency(run: _Run, account: str, q: Quantity, invoice_currency: str) -> Price | None:
    """The quantity's price for its service period in the invoice currency; none (`no_price`) or
    one only in another currency (`currency_mismatch`) is reported and gives None."""
    price = run.price_of(q.product_code, Period.containing(q.service[0], run.period.tz), invoice_currency)
    if price is None:
        run.unrated.add(Unrated(account, q.product_code, UnratedReason.NO_PRICE))
        return None
    if price.currency != invoice_currency:
        run.unrated.add(Unrated(account, q.product_code, UnratedReason.CURRENCY_MISMATCH, invoice_currency, price.currency))
        return None
    return price


def _distinct_id(run_id: str, account: str, q: Quantity, index: int) -> str:
    """A line's id from everything that makes its charge distinct: what `_merge` keeps apart
    (service end, proration fraction, true-up periods, rule) and the subscription of a charge
    that is not merged (a setup fee), on top of the usual id's parts."""
    fraction = f"{q.fraction[0]}/{q.fraction[1]}" if q.fraction is not None else ""
    return line_id(
        run_id,
        account,
        q.product_code,
        q.kind,
        q.service[0].isoformat(),
        q.note or "",
        str(index),
        "late" if q.late else "",
        q.service[1].isoformat(),
        fraction,
        str(q.periods or ""),
        q.rule,
        q.subscription_id or "",
    )


def _tell_twins_apart(run_id: str, lines: dict[str, list[RatedLine]], twins: dict[str, list[tuple[RatedLine, str, Quantity, int]]]) -> None:
    """A line's id is derived from its account, product, kind, service start, note, segment and
    lateness. Two distinct charges can share those (two daily-prorated subscriptions starting the
    same day, one ending mid-month; a true-up subscription beside a plain one; two setup fees of
    one day): then each of them takes the id of its whole distinguishing key instead, so no charge
    is dropped by the insert that skips a stored id. A line without a twin keeps its usual id, so
    ids of ordinary lines are the ones they always were; both are derived, so a replay gives the
    same ids. Identical keys still colliding (none known) are numbered in their rating order."""
    renamed: dict[int, str] = {}
    for group in twins.values():
        if len(group) < 2:
            continue
        seen: dict[str, int] = defaultdict(int)
        for line, account, q, index in group:
            distinct = _distinct_id(run_id, account, q, index)  # only for twins: ids cost a uuid5 each
            seen[distinct] += 1
            renamed[id(line)] = distinct if seen[distinct] == 1 else derived_event_id("rated_line", distinct, str(seen[distinct]))
    if not renamed:
        return
    for account, found in lines.items():
        lines[account] = [line.model_copy(update={"line_id": renamed[id(line)]}) if id(line) in renamed else line for line in found]


def _bills(sub: Subscription, period: Period) -> bool:
    return sub.schedule.billed_in(period) or Period.containing(sub.schedule.ordered_on) == period


def _observed_in(found: _Key, period: Period) -> bool:
    return any(period.contains(o.observed_at) for o in found.observations)


# --- quantity rules (BILLING-RULES §2): one function per rule, chosen by QUANTITY_RULES ---------

# What a rule yields for one account and product: the quantities the run bills, the usage and
# observation ids they consumed, and whether inputs the rule ignores were reported (a partner's mistake).
RuleResult = tuple[list[Quantity], list[str], list[str], bool]


def _quantities(period: Period, product: ProductInfo, found: _Key, closed_at: dict[str, datetime]) -> RuleResult:
    """The quantities the run bills for one account and product, by the product's quantity rule."""
    return QUANTITY_RULES[product.policy.quantity_rule](period, product, found, closed_at)


def usage_sum(period: Period, product: ProductInfo, found: _Key, closed_at: dict[str, datetime]) -> RuleResult:
    """`usage_sum`: the sum of the period's usage (with its summed cost, when every record has one,
    for cost-plus), and one late line per earlier closed period with usage no run billed."""
    service = (period.start, period.end)
    out: list[Quantity] = []
    used_usage: list[str] = []
    groups = [(service, found.usage, False)] + [((own.start, own.end), records, True) for own, records in sorted(found.late.items())]
    for span, records, late in groups:
        if not records:
            continue
        total = sum((u.quantity for u in records), Decimal(0))
        costs = [u.cost for u in records]
        cost = sum((c for c in costs if c is not None), Decimal(0)) if all(c is not None for c in costs) else None
        out.append(Quantity(product.code, product.kind, span, total, QuantityRule.USAGE_SUM.value, cost=cost, late=late))
        used_usage.extend(u.record_id for u in records)
    return out, used_usage, [], _observed_in(found, period)


def contracted(period: Period, product: ProductInfo, found: _Key, closed_at: dict[str, datetime]) -> RuleResult:
    """`contracted`: each subscription's ordered quantity for the terms this run bills (true-up
    subscriptions reconcile it with counts), subscriptions of one product and term merged."""
    out: list[Quantity] = []
    used_obs: list[str] = []
    for sub in found.subscriptions:
        if sub.policy.true_up:
            quantities, obs_used = true_up(period, product, sub, found.observations)
            out += quantities
            used_obs += obs_used
        else:
            out += _contracted_terms(period, product, sub, closed_at)
    mismatch = bool(found.usage or found.late) or (_observed_in(found, period) and not any(s.policy.true_up for s in found.subscriptions))
    return _merge(out), [], used_obs, mismatch


def observed(period: Period, product: ProductInfo, found: _Key, closed_at: dict[str, datetime]) -> RuleResult:
    """The observed rules (snapshot, latest, peak, distinct_active): the count the rule's function
    in OBSERVED_COUNTS finds. Counts bill on their own; with subscriptions, only while one of them
    bills, and the ordered quantity stands in until a count arrives (seed 001, example A's Fabrikam)."""
    mismatch = bool(found.usage or found.late)
    billing = [s for s in found.subscriptions if s.schedule.billed_in(period)]
    if found.subscriptions and not billing:
        return [], [], [], mismatch
    in_period = [o for o in found.observations if period.contains(o.observed_at)]
    count, obs_ids = OBSERVED_COUNTS[product.policy.quantity_rule](period, product.policy, found.observations, in_period)
    if count is None and billing:
        count = sum((s.schedule.quantity_on(period.end) for s in billing), Decimal(0))
    if count is None or count == 0:
        return [], [], [], mismatch
    return [Quantity(product.code, product.kind, (period.start, period.end), count, _rule_label(product.policy))], [], obs_ids, mismatch


def _rule_label(policy: BillingPolicy) -> str:
    if policy.quantity_rule is QuantityRule.SNAPSHOT:
        return f"snapshot(day={policy.snapshot_day})"
    return policy.quantity_rule.value


# An observed rule's count for the period from the account's observations (`history`: all up to
# the period's end; `in_period`: those inside it), with the ids of the observations it bills; None
# when there is none to go by.
Count = tuple[Decimal | None, list[str]]


def _newest(obs: Iterable[Observation]) -> Observation | None:
    return max(obs, key=lambda o: (o.observed_at, o.observation_id), default=None)


def latest(period: Period, policy: BillingPolicy, history: list[Observation], in_period: list[Observation]) -> Count:
    """`latest`: the latest count in the period."""
    found = _newest(in_period)
    return (found.count, [found.observation_id]) if found else (None, [])


def peak(period: Period, policy: BillingPolicy, history: list[Observation], in_period: list[Observation]) -> Count:
    """`peak`: the highest count in the period."""
    found = max(in_period, key=lambda o: (o.count, o.observed_at, o.observation_id), default=None)
    return (found.count, [found.observation_id]) if found else (None, [])


def snapshot(period: Period, policy: BillingPolicy, history: list[Observation], in_period: list[Observation]) -> Count:
    """`snapshot(day=N)`: the latest count on or before the end of local day N; none yet in the
    period: the latest earlier one carries forward."""
    # "On or before day N": before the first instant of day N + 1, local time.
    cutoff = local_midnight(period.start + timedelta(days=policy.snapshot_day or 1), period.tz)
    found = _newest(o for o in in_period if o.observed_at < cutoff) or _newest(o for o in history if o.observed_at < period.starts_at)
    return (found.count, [found.observation_id]) if found else (None, [])


def distinct_active(period: Period, policy: BillingPolicy, history: list[Observation], in_period: list[Observation]) -> Count:
    """`distinct_active`: the items active at the period's start (their last state before it) or
    reported active inside it; a deletion drops an item from the next period (seed 001)."""
    state: dict[str, str] = {}
    for obs in sorted((o for o in history if o.observed_at < period.starts_at), key=lambda o: (o.observed_at, o.observation_id)):
        for item, item_state in obs.items or ():
            state[item] = item_state
    active = {item for item, item_state in state.items() if item_state == "active"}
    for obs in in_period:
        active |= {item for item, item_state in obs.items or () if item_state == "active"}
    if not active and not any(o.items is not None for o in history):
        return None, []
    return Decimal(len(active)), sorted(o.observation_id for o in in_period)


OBSERVED_COUNTS: dict[QuantityRule, Callable[[Period, BillingPolicy, list[Observation], list[Observation]], Count]] = {
    QuantityRule.SNAPSHOT: snapshot,
    QuantityRule.LATEST: latest,
    QuantityRule.PEAK: peak,
    QuantityRule.DISTINCT_ACTIVE: distinct_active,
}

QUANTITY_RULES: dict[QuantityRule, Callable[[Period, ProductInfo, _Key, dict[str, datetime]], RuleResult]] = {
    QuantityRule.CONTRACTED: contracted,
    QuantityRule.USAGE_SUM: usage_sum,
    **{rule: observed for rule in OBSERVED_COUNTS},
}


# --- contracted terms and proration (BILLING-RULES §1, §3) -------------------------------------


def _contracted_terms(period: Period, product: ProductInfo, sub: Subscription, closed_at: dict[str, datetime]) -> list[Quantity]:
    """One subscription's recurring quantities for the terms this run bills (late ones marked),
    and the pro-rata additions of daily proration in advance."""
    out: list[Quantity] = []
    for service, late in _service_periods(period, sub.policy, sub.schedule, closed_at):
        out += [replace(q, late=True) if late else q for q in _recurring(product, sub, service, period)]
    return out + daily_advance_additions(period, product, sub)


def _service_periods(run: Period, policy: BillingPolicy, schedule: Schedule, closed_at: dict[str, datetime]) -> list[tuple[tuple[date, date], bool]]:
    """The service periods (month or year terms) this run bills for a subscription, each with
    whether it is late: arrears bills a term in the run closing its last month, advance in the run
    closing the month before it; when that run was closed before the order arrived, the next run
    not yet closed then bills it, as a late line (like late usage)."""
    first = Period.containing(schedule.billing_starts_on, run.tz)
    months = 12 if policy.interval == Interval.YEAR else 1
    due_offset = (months - 1) if policy.timing == Timing.ARREARS else -1
    # Only a term due in a period from `earliest` on can reach this run: `earliest` is the first
    # of the runs closed before the order arrived that lead up to this one (this run itself when
    # the one before it was not). A term due earlier stops at a run before this one, so the loop
    # starts at the first term due from `earliest` (one or two terms, however old the subscription).
    earliest = run
    while _closed_before(earliest.previous(), closed_at, schedule.ordered_at):
        earliest = earliest.previous()
    term = max(0, -(-(earliest.months_since(first) - due_offset) // months))
    out: list[tuple[tuple[date, date], bool]] = []
    while True:
        start = first.shift(term * months)
        end = start.shift(months - 1)
        if schedule.ends_on is not None and start.start > schedule.ends_on:
            break
        due = start.shift(due_offset)
        if due > run:
            break
        billed_by = due
        while _closed_before(billed_by, closed_at, schedule.ordered_at):
            billed_by = billed_by.next()
        if billed_by == run:
            out.append(((start.start, end.end), billed_by != due))
        term += 1
    return out


def _closed_before(period: Period, closed_at: dict[str, datetime], ordered_at: datetime) -> bool:
    """Whether the run of `period` was closed before the order arrived (strictly: an order at
    the very instant of a run, as with a frozen clock, is one that run saw and bills)."""
    closed = closed_at.get(period.label)
    return closed is not None and closed < ordered_at


def _recurring(product: ProductInfo, sub: Subscription, service: tuple[date, date], run: Period) -> list[Quantity]:
    """A term's recurring quantities, by the policy's proration rule (PRORATION); a yearly term
    is never prorated (`policy.check` refuses daily proration for it)."""
    proration = Proration(sub.policy.proration) if sub.policy.interval == "month" else Proration.NONE
    return PRORATION[proration](product, sub, service, run)


def no_proration(product: ProductInfo, sub: Subscription, service: tuple[date, date], run: Period) -> list[Quantity]:
    """`proration: none`: the quantity in force on the term's last day (arrears; seed 001 "changes
    are not prorated") or first billed day (advance), billed in full; a cancelled one's last day."""
    schedule = sub.schedule
    at = service[1] if sub.policy.timing == "arrears" else max(service[0], schedule.billing_starts_on)
    if schedule.ends_on is not None and at > schedule.ends_on:
        at = schedule.ends_on
    quantity = schedule.quantity_on(at)
    return [Quantity(product.code, product.kind, service, quantity, "contracted", subscription_id=sub.subscription_id)] if quantity != 0 else []


def daily_proration(product: ProductInfo, sub: Subscription, service: tuple[date, date], run: Period) -> list[Quantity]:
    """`proration: daily` (monthly terms): quantity × price × active days ÷ days in the month,
    both ends inclusive. Arrears: one quantity per span of equal quantity. Advance: billed ahead
    at the quantity of its first billed day (later additions: `daily_advance_additions`)."""
    schedule = sub.schedule
    period = Period.containing(service[0], run.tz)
    days = schedule.active_days(period)
    if days is None:
        return []
    if sub.policy.timing == "advance":
        first, last = days
        spans = [(first, last, schedule.quantity_on(first))]
    else:
        spans = schedule.quantity_spans(*days)
    return [
        Quantity(
            product.code,
            product.kind,
            (first, last),
            quantity,
            "contracted",
            fraction=daily_fraction(first, last, period),
            subscription_id=sub.subscription_id,
        )
        for first, last, quantity in spans
        if quantity != 0
    ]


def daily_advance_additions(period: Period, product: ProductInfo, sub: Subscription) -> list[Quantity]:
    """Daily proration in advance (seed 000): what was added inside a period already billed ahead
    is billed pro rata, for the days it was in force, by the run closing that period."""
    policy, schedule = sub.policy, sub.schedule
    if policy.timing != "advance" or policy.proration != Proration.DAILY or not schedule.billed_in(period):
        return []
    if schedule.billing_starts_on > period.start:
        return []
    billed = schedule.quantity_on(period.start)
    days = schedule.active_days(period)
    return [
        Quantity(
            product.code,
            product.kind,
            (first, last),
            quantity - billed,
            "contracted",
            fraction=((last - first).days + 1, period.days),
            note="addition",
            subscription_id=sub.subscription_id,
        )
        for first, last, quantity in (schedule.quantity_spans(*days) if days else [])
        if quantity > billed
    ]


def daily_fraction(first: date, last: date, period: Period) -> tuple[int, int] | None:
    """Active days ÷ days in the month, both ends inclusive; None for the whole month."""
    return None if (first, last) == (period.start, period.end) else ((last - first).days + 1, period.days)


def prorated(segments: list[Segment], fraction: tuple[int, int]) -> list[Segment]:
    """Daily proration of priced segments: each unit price × active days ÷ days in the month."""
    share = Decimal(fraction[0]) / Decimal(fraction[1])
    return [Segment(s.quantity, s.unit_price * share, f"{fraction[0]}/{fraction[1]} days") for s in segments]


PRORATION: dict[Proration, Callable[[ProductInfo, Subscription, tuple[date, date], Period], list[Quantity]]] = {
    Proration.NONE: no_proration,
    Proration.DAILY: daily_proration,
}


def true_up(period: Period, product: ProductInfo, sub: Subscription, history: list[Observation]) -> tuple[list[Quantity], list[str]]:
    """Contracted until the first count; from the period of the first count, actuals; in that
    period once, (actual − contracted) × the periods already billed at the lower count (BILLING-RULES §3)."""
    schedule = sub.schedule
    if not schedule.billed_in(period):
        return [], []
    first_billed = schedule.first_period
    counted = sorted((o for o in history if Period.of_instant(o.observed_at, period.tz) >= first_billed), key=lambda o: (o.observed_at, o.observation_id))
    first_count = Period.of_instant(counted[0].observed_at, period.tz) if counted else None
    service = (period.start, period.end)
    if first_count is None or period < first_count:
        return _recurring(product, sub, service, period), []
    last_count = [o for o in counted if o.observed_at < period.ends_before][-1]
    actual = last_count.count
    out = [Quantity(product.code, product.kind, service, actual, "contracted+true_up", subscription_id=sub.subscription_id)] if actual else []
    if period == first_count:
        ordered = schedule.quantity_on(period.end)
        billed_before = sum(1 for m in range(period.months_since(first_billed)) if schedule.billed_in(first_billed.shift(m)))
        if actual > ordered and billed_before:
            out.append(
                Quantity(
                    product.code,
                    "true_up",
                    service,
                    actual - ordered,
                    "true_up",
                    periods=billed_before,
                    note=f"reconciliation: {actual - ordered} × {billed_before} periods",
                    subscription_id=sub.subscription_id,
                )
            )
    return out, [last_count.observation_id]


def setup_fees(period: Period, subscriptions: list[Subscription]) -> list[Quantity]:
    """Setup: one-time, per ordered unit, never prorated, in the period the order was received (seed 001)."""
    out = []
    for sub in subscriptions:
        setup = sub.policy.setup_product
        if setup is None or sub.setup_exempt or Period.containing(sub.schedule.ordered_on, period.tz) != period:
            continue
        quantity = sub.schedule.steps[0].quantity
        day = sub.schedule.ordered_on
        out.append(Quantity(setup, "one_time", (day, day), quantity, "setup", subscription_id=sub.subscription_id))
    return out


def _merge(quantities: list[Quantity]) -> list[Quantity]:
    """Subscriptions of one product and service period bill as one line (their quantities summed)."""
    merged: dict[tuple[Any, ...], Quantity] = {}
    for q in quantities:
        key = (q.product_code, q.kind, q.service, q.fraction, q.periods, q.note, q.rule, q.late)
        if key in merged:
            prev = merged[key]
            merged[key] = Quantity(
                q.product_code, q.kind, q.service, prev.quantity + q.quantity, q.rule, fraction=q.fraction, late=q.late, note=q.note, periods=q.periods
            )
        else:
            merged[key] = q
    return list(merged.values())


# --- prices and lines ------------------------------------------------------------------------


def _price(q: Quantity, price: Price) -> list[Segment] | None:
    model = price.model
    if (model.needs_cost or (model.model == PriceModelKind.MARKUP and price.base is not None and price.base.needs_cost)) and q.cost is None:
        return None
    segments = model.segments(q.quantity, q.cost, price.base)
    if q.periods is not None:
        # The reconciliation: the delta's price, once per period already billed at the lower count.
        periods = Decimal(q.periods)
        if model.per_unit_price is not None:
            return [Segment(q.quantity * periods, s.unit_price, q.note) for s in segments]
        return [Segment(periods, s.amount, q.note) for s in segments]
    if q.fraction is not None:
        return prorated(segments, q.fraction)
    return segments


def _line(
    run_id: str,
    account: str,
    buyer: Buyer,
    product: ProductInfo,
    q: Quantity,
    segment: Segment,
    index: int,
    currency: str,
    bill_to: Buyer | None,
) -> RatedLine:
    notes = [n for n in (q.note if q.kind != "true_up" else None, segment.note) if n]
    description = product.name + (f" ({'; '.join(notes)})" if notes else "")
    if q.kind == "true_up":
        description = f"{product.name}: true-up ({segment.note})"
    return RatedLine(
        line_id=line_id(run_id, account, q.product_code, q.kind, q.service[0].isoformat(), q.note or "", str(index), "late" if q.late else ""),
        product_code=q.product_code,
        description=description,
        category=product.category,
        service_period_start=q.service[0],
        service_period_end=q.service[1],
        quantity=segment.quantity,
        unit_price=Money.of(segment.unit_price, currency),
        amount=Money.of(segment.amount, currency),
        quantity_rule=q.rule,
        end_customer_id=account if bill_to is not None else None,
        end_customer_name=buyer.name if bill_to is not None else None,
        late=q.late,
        kind=q.kind,
        timing=product.policy.timing if q.kind in ("recurring", "true_up") else Timing.ARREARS,
        tax_category=product.tax_category,
        unit=product.unit,
    )


def _discount_lines(
    run_id: str, period: Period, account: str, lines: list[RatedLine], discounts: list[Discount], bill_to: Buyer | None, buyer: Buyer
) -> list[RatedLine]:
    """Discounts (seeds 000, 004): a percentage or a fixed amount off one subscription's, one
    product's or the whole invoice's lines of the period, each a negative line, never more than
    what it discounts."""
    out: list[RatedLine] = []
    for discount in sorted(discounts, key=lambda d: d.discount_id):
        if not discount.applies_in(period) or (discount.account_id is not None and discount.account_id != account):
            continue
        if discount.scope == "invoice":
            covered = [line for line in lines if line.kind != "discount"]
        elif discount.scope == "product":
            covered = [line for line in lines if line.product_code == discount.target and line.kind != "discount"]
        else:
            covered = []  # subscription discounts arrive resolved to their account and product
        base = sum((line.amount.amount for line in covered), Decimal(0))
        if base <= 0:
            continue
        off = base * discount.percent / 100 if discount.percent is not None else min(discount.amount or Decimal(0), base)
        currency = covered[0].amount.currency
        label = f"{discount.percent}%" if discount.percent is not None else Money.of(off, currency).amount
        out.append(
            RatedLine(
                line_id=line_id(run_id, account, "discount", discount.discount_id),
                product_code=discount.target if discount.scope == "product" and discount.target else "DISCOUNT",
                description=f"Discount {label} ({discount.scope}{': ' + discount.target if discount.target else ''})",
                category=None,
                service_period_start=period.start,
                service_period_end=period.end,
                quantity=Decimal(1),
                unit_price=Money.of(-off, currency),
                amount=Money.of(-off, currency),
                quantity_rule="discount",
                end_customer_id=account if bill_to is not None else None,
                end_customer_name=buyer.name if bill_to is not None else None,
                kind="discount",
                tax_category=covered[0].tax_category if len({line.tax_category for line in covered}) == 1 else None,
            )
        )
    return out
