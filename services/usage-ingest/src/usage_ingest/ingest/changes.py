"""Changes to ordered subscriptions: a new quantity, or the cancellation. Each under the
partner's own id (posting it again returns the first result); a subscription that is cancelled
takes no further change (409 `subscription_cancelled`); nothing is applied on any error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, SubscriptionCancelled, SubscriptionChanged, derived_event_id
from billing_runtime.errors import BillingError, Conflict, NotFound
from billing_runtime.service import ServiceRuntime
from billing_runtime.tenancy import select_scoped
from usage_ingest.ingest import repository as repo
from usage_ingest.ingest.schemas import CancellationIn, OrderChangeIn
from usage_ingest.ingest.service import RECORDS, content_hash, rejection

tracer = trace.get_tracer(__name__)
CHANGES = Counter("billing_ingest_order_changes_total", "Order changes and cancellations, by kind and outcome", ["kind", "outcome"])


class InvalidChange(BillingError):
    status_code = 422
    code = "validation_error"


def _parse(model: type[BaseModel], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = rejection(0, raw, exc)
        raise InvalidChange(first.message or "invalid", code=first.code or "invalid_value", field=first.field) from exc


def _out(row: Any, duplicate: bool) -> dict[str, Any]:
    return {
        "id": row.change_id,
        "order_id": row.order_id,
        "kind": row.kind,
        "quantity": None if row.quantity is None else str(row.quantity),
        "effective_on": row.effective_on.isoformat(),
        "received_at": row.received_at.isoformat(),
        "status": "duplicate" if duplicate else "accepted",
    }


def change_event(runtime: ServiceRuntime, tenant: str, row: dict[str, Any], subscription: str, account: str, requested_at: datetime) -> CloudEvent[Any]:
    """The event of an accepted change `row` (live or imported) of `subscription`, billed to `account`."""
    common = {
        "subscription_id": subscription,
        "order_id": row["change_id"],
        "account_id": account,
        "partner_id": tenant,
        "requested_at": requested_at,
        "effective_on": row["effective_on"],
    }
    kind = row["kind"]
    data = SubscriptionChanged(**common, quantity=row["quantity"]) if kind == "quantity" else SubscriptionCancelled(**common)
    return runtime.event(data, tenant=tenant, event_id=derived_event_id(f"order_{kind}", tenant, row["change_id"]), subject=subscription)


async def change_order(runtime: ServiceRuntime, session: AsyncSession, tenant: str, order_id: str, raw: Any, kind: str) -> dict[str, Any]:
    """A quantity change (`kind` quantity) or a cancellation of the subscription `order_id` opened."""
    with tracer.start_as_current_span(f"ingest order {kind}", attributes={"billing.tenant": tenant, "billing.order_id": order_id}):
        record = _parse(OrderChangeIn if kind == "quantity" else CancellationIn, raw)
        now: datetime = runtime.clock.now()
        digest = content_hash(record)
        # One change at a time per order: the order row is the lock, so a change racing a
        # cancellation sees it.
        order = (await session.execute(select_scoped(repo.ORDER, tenant).where(repo.ORDER.c.order_id == order_id).with_for_update())).first()
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", field="order_id")
        previous = await repo.get_row(session, repo.CHANGE, "change_id", tenant, record.id)
        if previous is not None:
            if previous.content_hash != digest or previous.order_id != order_id or previous.kind != kind:
                CHANGES.labels(kind, "conflict").inc()
                raise Conflict("a different change with this id was already accepted; nothing was changed", code="id_conflict", field="id")
            CHANGES.labels(kind, "duplicate").inc()
            return _out(previous, duplicate=True)
        cancelled = (
            await session.execute(
                select_scoped(repo.CHANGE, tenant, repo.CHANGE.c.change_id).where(repo.CHANGE.c.order_id == order_id, repo.CHANGE.c.kind == "cancellation")
            )
        ).first()
        if cancelled is not None:
            CHANGES.labels(kind, "cancelled").inc()
            raise Conflict(f"the subscription of order {order_id!r} is cancelled (by {cancelled.change_id!r})", code="subscription_cancelled")
        row = {
            "tenant": tenant,
            "change_id": record.id,
            "order_id": order_id,
            "kind": kind,
            "quantity": getattr(record, "quantity", None),
            "effective_on": record.effective_date or now.date(),
            "content_hash": digest,
            "received_at": now,
        }
        await session.execute(pg_insert(repo.CHANGE).values(**row))
        await runtime.outbox.add(session, change_event(runtime, tenant, row, order.subscription_id, order.account_id, now))
        CHANGES.labels(kind, "accepted").inc()
        RECORDS.labels(f"order_{kind}", "accepted").inc()
        return _out((await repo.get_row(session, repo.CHANGE, "change_id", tenant, record.id)), duplicate=False)
