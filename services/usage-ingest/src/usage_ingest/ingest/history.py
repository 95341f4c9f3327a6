"""Historic orders, changes and cancellations: a partner migrating from another system posts its
history with the dates its customers asked, and rating rates them as if they had arrived then.

One request is one batch (up to 1,000 items, in the order they happened), judged whole: an item
that cannot be accepted refuses the batch (422 `batch_rejected`, each refused item with its code),
nothing is written, and posting it again after the fix accepts it. Each item is idempotent by the
partner's own id (orders in the order ids, changes and cancellations in the change ids, the same
namespaces as the live routes): the same item again is a `duplicate` with its first result.

Refused: a date (the request's day, an order's start or a change's effective day) inside a period
rating has already closed for the partner or the distributor (`period_closed`: its invoices are
issued, and history must not change them; live orders and changes are the way from then on), a
request in the future (`not_historic`), a change before its order's request, a change of an
unknown or cancelled order, and what the live routes refuse (unknown customer or product).

Set-based: the batch is read with a fixed number of statements (customers, orders, changes,
cancellations, the catalogue, the closed periods), written with one insert per table and one
outbox insert, whatever its size."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, SubscriptionOrdered, derived_event_id
from billing_runtime.service import ServiceRuntime
from usage_ingest.catalogue import service as catalogue
from usage_ingest.ingest import repository as repo
from usage_ingest.ingest.changes import change_event
from usage_ingest.ingest.schemas import HistoricCancellationIn, HistoricChangeIn, HistoricOrderIn, HistoryItem, Status
from usage_ingest.ingest.service import (
    Outcome,
    RowView,
    _conflict,
    _order_event,
    _order_row,
    _posted_again,
    _refused,
    _rejection,
    _result,
    _unknown_customer,
    batch_rejected,
    content_hash,
)

tracer = trace.get_tracer(__name__)
IMPORTED = Counter("billing_ingest_history_items_total", "Historic orders, changes and cancellations posted, by kind and outcome", ["kind", "outcome"])
REFUSED_BATCHES = Counter("billing_ingest_history_batches_refused_total", "Historic import batches refused whole, by the first refusal's code", ["code"])
HISTORY_BATCH = Histogram("billing_ingest_history_batch_items", "Items per historic import batch", buckets=(1, 10, 50, 100, 250, 500, 1000))

PERIOD_CLOSED = "period_closed"
_ITEM: TypeAdapter[HistoricOrderIn | HistoricChangeIn | HistoricCancellationIn] = TypeAdapter(HistoryItem)


@dataclass(frozen=True)
class _Target:
    """The order a change applies to, stored or earlier in the batch."""

    subscription_id: str
    account_id: str
    requested_at: datetime


def _dates(item: HistoricOrderIn | HistoricChangeIn | HistoricCancellationIn) -> list[tuple[str, date]]:
    own = item.start_date if isinstance(item, HistoricOrderIn) else (item.effective_date or item.requested_at.date())
    return [("requested_at", item.requested_at.date()), ("start_date" if isinstance(item, HistoricOrderIn) else "effective_date", own)]


def _in_closed(day: date, closed: list[tuple[date, date]]) -> tuple[date, date] | None:
    return next((p for p in closed if p[0] <= day <= p[1]), None)


def _utc(moment: datetime) -> str:
    """As stored (timestamptz): the answer to an accepted item and to its repeat are the same text."""
    return moment.astimezone(UTC).isoformat()


def _order_result(row: Any) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "subscription_id": row.subscription_id,
        "requested_at": _utc(row.requested_at),
        "received_at": _utc(row.received_at),
    }


def _change_result(row: Any) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "kind": row.kind,
        "quantity": None if row.quantity is None else str(row.quantity),
        "effective_on": row.effective_on.isoformat(),
        "requested_at": _utc(row.requested_at),
        "received_at": _utc(row.received_at),
    }


async def import_history(runtime: ServiceRuntime, session: AsyncSession, tenant: str, raw_items: list[Any]) -> Outcome:
    """Validate, store and emit a batch of historic items, in the order given; refused whole
    (`BatchRejected`, nothing written) when any item is rejected or conflicts."""
    with tracer.start_as_current_span("ingest history", attributes={"billing.tenant": tenant, "billing.records": len(raw_items)}):
        HISTORY_BATCH.observe(len(raw_items))
        outcome, events = await _judge_and_write(runtime, session, tenant, raw_items)
        if refused := outcome.refusals():
            REFUSED_BATCHES.labels(refused[0]["code"]).inc()
            raise batch_rejected(refused, len(raw_items), "historic items")
        await runtime.outbox.add_many(session, events)
        for r, raw in zip(outcome.results, raw_items, strict=True):
            IMPORTED.labels(str(raw.get("kind")) if isinstance(raw, dict) else "unknown", r["status"]).inc()
        return outcome


async def _judge_and_write(runtime: ServiceRuntime, session: AsyncSession, tenant: str, raw_items: list[Any]) -> tuple[Outcome, list[CloudEvent[Any]]]:
    now = runtime.clock.now()
    results: list[dict[str, Any] | None] = [None] * len(raw_items)
    items: list[tuple[int, HistoricOrderIn | HistoricChangeIn | HistoricCancellationIn, str]] = []
    for index, raw in enumerate(raw_items):
        try:
            item = _ITEM.validate_python(raw)
        except ValidationError as exc:
            results[index] = _rejection(index, raw, exc)
            continue
        items.append((index, item, content_hash(item)))

    orders = [(i, it, d) for i, it, d in items if isinstance(it, HistoricOrderIn)]
    changes = [(i, it, d) for i, it, d in items if not isinstance(it, HistoricOrderIn)]
    targets = {it.order_id for _, it, _ in changes if not isinstance(it, HistoricOrderIn)}
    accounts = await repo.account_ids(session, tenant, {it.customer_id for _, it, _ in orders if isinstance(it, HistoricOrderIn)})
    stored_orders = await repo.existing(session, repo.ORDER, "order_id", tenant, sorted({it.id for _, it, _ in orders} | targets))
    stored_changes = await repo.existing(session, repo.CHANGE, "change_id", tenant, sorted({it.id for _, it, _ in changes}))
    cancelled = await repo.cancelled_orders(session, tenant, sorted(targets))
    new_orders = [(i, it) for i, it, _ in orders if it.id not in stored_orders]
    unknown = await catalogue.refusals(session, tenant, "order", new_orders)
    closed = await catalogue.closed_periods(session, tenant, [day for _, it, _ in items for _, day in _dates(it)])

    order_rows: list[dict[str, Any]] = []
    change_rows: list[dict[str, Any]] = []
    events: list[CloudEvent[Any]] = []
    batch_targets: dict[str, _Target] = {}
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for index, item, digest in items:
        space = "order" if isinstance(item, HistoricOrderIn) else "change"
        first = seen.get((space, item.id))
        if first is not None:
            results[index] = (
                _conflict(index, item.id) if first[1] != digest else {**(results[first[0]] or {}), "index": index, "status": Status.DUPLICATE.value}
            )
            continue
        seen[(space, item.id)] = (index, digest)
        stored = stored_orders.get(item.id) if space == "order" else stored_changes.get(item.id)
        if stored is not None:
            results[index] = _posted_again(index, item.id, stored, digest, _order_result if space == "order" else _change_result)
            continue
        if item.requested_at > now:
            results[index] = _refused(
                index, item.id, Status.REJECTED, "not_historic", "requested_at", f"requested_at {item.requested_at.isoformat()} is in the future; post it live"
            )
            continue
        hit = next(((field, p) for field, day in _dates(item) if (p := _in_closed(day, closed)) is not None), None)
        if hit is not None:
            field, (first_day, last_day) = hit
            message = (
                f"{field} falls in the period {first_day.isoformat()} to {last_day.isoformat()}, which is already closed and invoiced; history cannot change it"
            )
            results[index] = _refused(index, item.id, Status.REJECTED, PERIOD_CLOSED, field, message)
            continue
        if isinstance(item, HistoricOrderIn):
            account = accounts.get(item.customer_id)
            if account is None:
                results[index] = _unknown_customer(index, item.id, item.customer_id)
                continue
            if index in unknown:
                results[index] = _refused(index, item.id, Status.REJECTED, *unknown[index])
                continue
            row = {**_order_row(tenant, item, account, now), "content_hash": digest, "requested_at": item.requested_at}
            order_rows.append(row)
            batch_targets[item.id] = _Target(row["subscription_id"], account, item.requested_at)
            data = SubscriptionOrdered(**_order_event(tenant, row))
            events.append(runtime.event(data, tenant=tenant, event_id=derived_event_id("order", tenant, item.id), subject=item.id))
            results[index] = _result(index, item.id, Status.ACCEPTED, result=_order_result(RowView(row)))
            continue
        target_row = stored_orders.get(item.order_id)
        target = batch_targets.get(item.order_id) or (
            _Target(target_row.subscription_id, target_row.account_id, target_row.requested_at or target_row.received_at) if target_row is not None else None
        )
        if target is None:
            results[index] = _refused(
                index, item.id, Status.REJECTED, "order_not_found", "order_id", f"no order {item.order_id!r} stored or earlier in this batch"
            )
            continue
        if item.order_id in cancelled:
            results[index] = _refused(
                index, item.id, Status.REJECTED, "subscription_cancelled", "order_id", f"the subscription of order {item.order_id!r} is cancelled"
            )
            continue
        if item.requested_at < target.requested_at:
            message = f"requested_at {item.requested_at.isoformat()} is before its order's request ({target.requested_at.isoformat()})"
            results[index] = _refused(index, item.id, Status.REJECTED, "invalid_value", "requested_at", message)
            continue
        kind = "quantity" if isinstance(item, HistoricChangeIn) else "cancellation"
        effective = item.effective_date or item.requested_at.date()
        quantity = item.quantity if isinstance(item, HistoricChangeIn) else None
        row = {
            "tenant": tenant,
            "change_id": item.id,
            "order_id": item.order_id,
            "kind": kind,
            "quantity": quantity,
            "effective_on": effective,
            "content_hash": digest,
            "received_at": now,
            "requested_at": item.requested_at,
        }
        change_rows.append(row)
        if kind == "cancellation":
            cancelled.add(item.order_id)  # a later change of it in the batch is refused
        events.append(change_event(runtime, tenant, row, target.subscription_id, target.account_id, item.requested_at))
        results[index] = _result(index, item.id, Status.ACCEPTED, result=_change_result(RowView(row)))

    outcome = Outcome("history", [r for r in results if r is not None])
    if outcome.refusals():
        return outcome, []
    # A concurrent request that stored one of these ids first keeps it: the batch is then refused.
    for table, id_column, rows in ((repo.ORDER, "order_id", order_rows), (repo.CHANGE, "change_id", change_rows)):
        inserted = await repo.insert_new(session, table, id_column, rows)
        for row in rows:
            if row[id_column] not in inserted:
                index = next(r["index"] for r in outcome.results if r["id"] == row[id_column] and r["status"] == Status.ACCEPTED.value)
                outcome.results[index] = _conflict(index, row[id_column])
    return outcome, events
