"""The intake rules: every record is judged on its own, and posting it again changes nothing.

A record's fate is one of: accepted (stored and emitted), duplicate (same id, same content:
the original result is returned), conflict (same id, other content: nothing changes), rejected
(invalid: a stable code and the field).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CustomerUpserted,
    EventData,
    QuantityObserved,
    SubscriptionOrdered,
    UsageRecorded,
    account_id,
    derived_event_id,
    subscription_id,
)
from billing_runtime.service import ServiceRuntime
from usage_ingest.ingest import repository as repo
from usage_ingest.ingest.schemas import (
    BatchResult,
    CustomerIn,
    OrderIn,
    QuantityIn,
    RecordResult,
    Status,
    UsageIn,
)

tracer = trace.get_tracer(__name__)
RECORDS = Counter("billing_ingest_records_total", "Records posted by partners, by outcome", ["kind", "status"])

_PYDANTIC_CODES = {
    "missing": "field_required",
    "extra_forbidden": "unknown_field",
    "string_pattern_mismatch": "invalid_format",
    "string_too_short": "invalid_format",
    "string_too_long": "too_long",
    "datetime_parsing": "invalid_datetime",
    "datetime_from_date_parsing": "invalid_datetime",
    "timezone_aware": "timezone_required",
    "date_parsing": "invalid_date",
    "date_from_datetime_parsing": "invalid_date",
    "bool_parsing": "invalid_boolean",
    "bool_type": "invalid_boolean",
    "string_type": "invalid_type",
    "model_type": "invalid_type",
    "list_type": "invalid_type",
}


# Fields added after records were first stored: left out of the hash while they hold their
# default, so a record posted again as before stays a duplicate.
_ADDED_LATER = {"address": None, "tax_exempt": False, "setup_exempt": False}


def content_hash(record: BaseModel) -> str:
    content = {k: v for k, v in record.model_dump(mode="json").items() if k not in _ADDED_LATER or v != _ADDED_LATER[k]}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def rejection(index: int, raw: Any, error: ValidationError) -> RecordResult:
    first = error.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    code = _PYDANTIC_CODES.get(first["type"], "invalid_value")
    message = first.get("msg", "invalid")
    if first["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return RecordResult(
        index=index,
        id=raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None,
        status=Status.REJECTED,
        code=code,
        field=".".join(loc) or None,
        message=message,
    )


@dataclass(frozen=True)
class Kind:
    """How one kind of create-only record is stored, emitted and reported."""

    name: str
    model: type[BaseModel]
    table: Table
    id_column: str
    to_row: Callable[[str, Any, str, datetime], dict[str, Any]]
    to_event: Callable[[str, dict[str, Any]], EventData]
    result: Callable[[Any], dict[str, Any]]


def _order_row(tenant: str, rec: OrderIn, account: str, now: datetime) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "order_id": rec.id,
        "subscription_id": subscription_id(tenant, rec.id),
        "account_id": account,
        "product_code": rec.product_code,
        "quantity": rec.quantity,
        "start_on": rec.start_date,
        "setup_exempt": rec.setup_exempt,
        "received_at": now,
    }


def _order_event(tenant: str, row: dict[str, Any]) -> EventData:
    return SubscriptionOrdered(
        subscription_id=row["subscription_id"],
        order_id=row["order_id"],
        account_id=row["account_id"],
        partner_id=tenant,
        product_code=row["product_code"],
        quantity=row["quantity"],
        start_on=row["start_on"],
        ordered_at=row["received_at"],
        setup_exempt=row.get("setup_exempt", False),
    )


def _usage_row(tenant: str, rec: UsageIn, account: str, now: datetime) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "record_id": rec.id,
        "account_id": account,
        "product_code": rec.product_code,
        "quantity": rec.quantity,
        "occurred_at": rec.timestamp,
        "cost": rec.cost.model_dump(mode="json") if rec.cost else None,
        "received_at": now,
    }


def _usage_event(tenant: str, row: dict[str, Any]) -> EventData:
    return UsageRecorded(
        record_id=row["record_id"],
        account_id=row["account_id"],
        partner_id=tenant,
        product_code=row["product_code"],
        quantity=row["quantity"],
        occurred_at=row["occurred_at"],
        cost=row["cost"],
    )


def _quantity_row(tenant: str, rec: QuantityIn, account: str, now: datetime) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "observation_id": rec.id,
        "account_id": account,
        "product_code": rec.product_code,
        "observed_at": rec.observed_at,
        "source": rec.source,
        "quantity": rec.quantity,
        "items": [i.model_dump() for i in rec.items] if rec.items is not None else None,
        "received_at": now,
    }


def _quantity_event(tenant: str, row: dict[str, Any]) -> EventData:
    return QuantityObserved(
        observation_id=row["observation_id"],
        account_id=row["account_id"],
        partner_id=tenant,
        product_code=row["product_code"],
        observed_at=row["observed_at"],
        source=row["source"],
        quantity=row["quantity"],
        items=row["items"],
    )


def _received(row: Any) -> dict[str, Any]:
    return {"account_id": row.account_id, "received_at": row.received_at.isoformat()}


def _order_result(row: Any) -> dict[str, Any]:
    return {**_received(row), "subscription_id": row.subscription_id}


ORDERS = Kind("order", OrderIn, repo.ORDER, "order_id", _order_row, _order_event, _order_result)
USAGE = Kind("usage", UsageIn, repo.USAGE, "record_id", _usage_row, _usage_event, _received)
QUANTITIES = Kind("quantity", QuantityIn, repo.QUANTITY, "observation_id", _quantity_row, _quantity_event, _received)


def _summarise(kind: str, results: list[RecordResult]) -> BatchResult:
    counts = {status: 0 for status in Status}
    for r in results:
        counts[r.status] += 1
    for status, n in counts.items():
        if n:
            RECORDS.labels(kind, status.value).inc(n)
    return BatchResult(
        accepted=counts[Status.ACCEPTED],
        duplicate=counts[Status.DUPLICATE],
        conflict=counts[Status.CONFLICT],
        rejected=counts[Status.REJECTED],
        results=results,
    )


def _conflict(index: int, record_id: str) -> RecordResult:
    return RecordResult(
        index=index,
        id=record_id,
        status=Status.CONFLICT,
        code="id_conflict",
        field="id",
        message="a different record with this id was already accepted; nothing was changed",
    )


async def ingest_records(runtime: ServiceRuntime, session: AsyncSession, tenant: str, kind: Kind, raw_records: list[Any]) -> BatchResult:
    """Validate, store and emit a batch of create-only records (orders, usage, quantities)."""
    with tracer.start_as_current_span(f"ingest {kind.name}", attributes={"billing.tenant": tenant, "billing.records": len(raw_records)}):
        return await _ingest_records(runtime, session, tenant, kind, raw_records)


async def _ingest_records(runtime: ServiceRuntime, session: AsyncSession, tenant: str, kind: Kind, raw_records: list[Any]) -> BatchResult:
    now = runtime.clock.now()
    results: dict[int, RecordResult] = {}
    candidates: list[tuple[int, Any, str]] = []
    first_in_batch: dict[str, tuple[int, str]] = {}
    repeats: list[tuple[int, str, str]] = []

    for index, raw in enumerate(raw_records):
        try:
            record = kind.model.model_validate(raw)
        except ValidationError as exc:
            results[index] = rejection(index, raw, exc)
            continue
        digest = content_hash(record)
        seen = first_in_batch.get(record.id)  # type: ignore[attr-defined]
        if seen is not None:
            repeats.append((index, record.id, digest))  # type: ignore[attr-defined]
            continue
        first_in_batch[record.id] = (index, digest)  # type: ignore[attr-defined]
        candidates.append((index, record, digest))

    accounts = await repo.account_ids(session, tenant, (rec.customer_id for _, rec, _ in candidates))
    stored = await repo.existing(session, kind.table, kind.id_column, tenant, [rec.id for _, rec, _ in candidates])

    new_rows: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, record, digest in candidates:
        previous = stored.get(record.id)
        if previous is not None:
            results[index] = (
                RecordResult(index=index, id=record.id, status=Status.DUPLICATE, result=kind.result(previous))
                if previous.content_hash == digest
                else _conflict(index, record.id)
            )
            continue
        account = accounts.get(record.customer_id)
        if account is None:
            results[index] = RecordResult(
                index=index,
                id=record.id,
                status=Status.REJECTED,
                code="unknown_customer",
                field="customer_id",
                message=f"no customer {record.customer_id!r}; post it to /v1/customers first",
            )
            continue
        row = kind.to_row(tenant, record, account, now)
        row["content_hash"] = digest
        new_rows[record.id] = (index, row)

    inserted = await repo.insert_new(session, kind.table, kind.id_column, [row for _, row in new_rows.values()])
    events = []
    raced = [rid for rid in new_rows if rid not in inserted]
    winners = await repo.existing(session, kind.table, kind.id_column, tenant, raced)
    for record_id, (index, row) in new_rows.items():
        if record_id in inserted:
            results[index] = RecordResult(index=index, id=record_id, status=Status.ACCEPTED, result=kind.result(_RowView(row)))
            events.append(
                runtime.event(
                    kind.to_event(tenant, row),
                    tenant=tenant,
                    event_id=derived_event_id(kind.name, tenant, record_id),
                    subject=record_id,
                )
            )
        else:
            winner = winners[record_id]
            results[index] = (
                RecordResult(index=index, id=record_id, status=Status.DUPLICATE, result=kind.result(winner))
                if winner.content_hash == row["content_hash"]
                else _conflict(index, record_id)
            )
    await runtime.outbox.add(session, *events)

    for index, record_id, digest in repeats:
        first_index, first_digest = first_in_batch[record_id]
        first = results[first_index]
        if digest != first_digest:
            results[index] = _conflict(index, record_id)
        elif first.status in (Status.ACCEPTED, Status.DUPLICATE):
            results[index] = RecordResult(index=index, id=record_id, status=Status.DUPLICATE, result=first.result)
        else:
            results[index] = first.model_copy(update={"index": index})

    return _summarise(kind.name, [results[i] for i in range(len(raw_records))])


async def upsert_customers(runtime: ServiceRuntime, session: AsyncSession, tenant: str, raw_records: list[Any]) -> BatchResult:
    """Create or update customers by the partner's own id. Unchanged content is a duplicate."""
    with tracer.start_as_current_span("ingest customer", attributes={"billing.tenant": tenant, "billing.records": len(raw_records)}):
        return await _upsert_customers(runtime, session, tenant, raw_records)


async def _upsert_customers(runtime: ServiceRuntime, session: AsyncSession, tenant: str, raw_records: list[Any]) -> BatchResult:
    results: list[RecordResult] = []
    events = []
    for index, raw in enumerate(raw_records):
        try:
            record = CustomerIn.model_validate(raw)
        except ValidationError as exc:
            results.append(rejection(index, raw, exc))
            continue
        account = account_id(tenant, record.id)
        row = {
            "tenant": tenant,
            "external_id": record.id,
            "account_id": account,
            "name": record.name,
            "billing_email": record.billing_email,
            "country": record.country,
            "currency": record.currency,
            "business": record.business,
            "vat_id": record.vat_id,
            "address": record.address.model_dump(mode="json") if record.address else None,
            "tax_exempt": record.tax_exempt,
            "content_hash": content_hash(record),
            "updated_at": runtime.clock.now(),
        }
        revision, changed = await repo.upsert_customer(session, row)
        result = {"account_id": account, "revision": revision}
        if not changed:
            results.append(RecordResult(index=index, id=record.id, status=Status.DUPLICATE, result=result))
            continue
        results.append(RecordResult(index=index, id=record.id, status=Status.ACCEPTED, result=result))
        events.append(
            runtime.event(
                CustomerUpserted(
                    account_id=account,
                    partner_id=tenant,
                    external_id=record.id,
                    name=record.name,
                    billing_email=record.billing_email,
                    country=record.country,
                    currency=record.currency,
                    business=record.business,
                    vat_id=record.vat_id,
                    address=record.address,
                    tax_exempt=record.tax_exempt,
                    revision=revision,
                ),
                tenant=tenant,
                event_id=derived_event_id("customer", tenant, record.id, str(revision)),
                subject=record.id,
            )
        )
    await runtime.outbox.add(session, *events)
    return _summarise("customer", results)


class _RowView:
    """Attribute access over a row dict, so `Kind.result` reads new and stored rows alike."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.__dict__.update(row)
