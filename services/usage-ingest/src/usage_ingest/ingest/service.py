"""The intake rules: every record is judged on its own, and posting it again changes nothing.

A record's fate is one of: accepted (stored and emitted), duplicate (same id, same content:
the original result is returned), conflict (same id, other content: nothing changes), rejected
(invalid: a stable code and the field).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_json
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    CustomerUpserted,
    EventData,
    QuantityObserved,
    SubscriptionOrdered,
    UsageRecorded,
    account_id,
    derived_event_id,
    subscription_id,
)
from billing_runtime.errors import BillingError
from billing_runtime.service import ServiceRuntime
from usage_ingest.catalogue import service as catalogue
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
BATCH_SIZE = Histogram("billing_ingest_batch_records", "Records per posted batch", ["kind"], buckets=(1, 10, 50, 100, 250, 500, 1000))
ATOMIC_REFUSED = Counter("billing_ingest_batches_refused_total", "Batches posted with atomic=true and refused whole", ["kind"])

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
_ADDED_LATER = {"address": None, "tax_exempt": False, "setup_exempt": False, "contact_name": None, "contact_phone": None}


def content_hash(record: BaseModel) -> str:
    return _digest(record.model_dump(mode="json"))


def _digest(dumped: dict[str, Any]) -> str:
    content = {k: v for k, v in dumped.items() if k not in _ADDED_LATER or v != _ADDED_LATER[k]}
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
    event_model: type[EventData]
    table: Table
    id_column: str
    to_row: Callable[[str, Any, str, datetime], dict[str, Any]]
    to_event: Callable[[str, dict[str, Any]], dict[str, Any]]
    result: Callable[[Any], dict[str, Any]]

    @cached_property
    def batch(self) -> TypeAdapter[list[Any]]:
        """Validates a whole batch in one call (the records as a list of this kind's model)."""
        return TypeAdapter(list[self.model])  # type: ignore[name-defined]  # a class known only at run time

    @cached_property
    def event_batch(self) -> TypeAdapter[list[Any]]:
        return TypeAdapter(list[self.event_model])  # type: ignore[name-defined]  # a class known only at run time

    @cached_property
    def envelopes(self) -> TypeAdapter[list[CloudEvent[Any]]]:
        """Envelopes of this kind's event, validated a batch at a time (the generic class made once)."""
        return TypeAdapter(list[CloudEvent[self.event_model]])  # type: ignore[name-defined]  # a class known only at run time


def build_events(kind: Kind, source: str, tenant: str, now: datetime, rows: list[dict[str, Any]]) -> list[CloudEvent[Any]]:
    """The events of accepted rows, validated in two calls for the whole batch (data, envelopes):
    the same events `new_event` builds one at a time, at a fraction of the cost."""
    if not rows:
        return []
    with tracer.start_as_current_span("ingest events", attributes={"billing.events": len(rows)}):
        datas = kind.event_batch.validate_python([kind.to_event(tenant, row) for row in rows])
        event_type = kind.event_model.event_type
        envelopes = [
            {
                "id": derived_event_id(kind.name, tenant, row[kind.id_column]),
                "source": source,
                "type": event_type,
                "subject": row[kind.id_column],
                "time": now,
                "tenant": tenant,
                "data": data,
            }
            for row, data in zip(rows, datas, strict=True)
        ]
        return kind.envelopes.validate_python(envelopes)


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


def _order_event(tenant: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "subscription_id": row["subscription_id"],
        "order_id": row["order_id"],
        "account_id": row["account_id"],
        "partner_id": tenant,
        "product_code": row["product_code"],
        "quantity": row["quantity"],
        "start_on": row["start_on"],
        # An order imported from another system's history was ordered when its customer asked.
        "ordered_at": row.get("requested_at") or row["received_at"],
        "setup_exempt": row.get("setup_exempt", False),
    }


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


def _usage_event(tenant: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "record_id": row["record_id"],
        "account_id": row["account_id"],
        "partner_id": tenant,
        "product_code": row["product_code"],
        "quantity": row["quantity"],
        "occurred_at": row["occurred_at"],
        "cost": row["cost"],
    }


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


def _quantity_event(tenant: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "observation_id": row["observation_id"],
        "account_id": row["account_id"],
        "partner_id": tenant,
        "product_code": row["product_code"],
        "observed_at": row["observed_at"],
        "source": row["source"],
        "quantity": row["quantity"],
        "items": row["items"],
    }


@lru_cache(maxsize=256)
def _iso(moment: datetime) -> str:
    # A batch's records share their received_at: formatted once, not once per record.
    return moment.isoformat()


def _received(row: Any) -> dict[str, Any]:
    return {"account_id": row.account_id, "received_at": _iso(row.received_at)}


def _order_result(row: Any) -> dict[str, Any]:
    return {**_received(row), "subscription_id": row.subscription_id}


ORDERS = Kind("order", OrderIn, SubscriptionOrdered, repo.ORDER, "order_id", _order_row, _order_event, _order_result)
USAGE = Kind("usage", UsageIn, UsageRecorded, repo.USAGE, "record_id", _usage_row, _usage_event, _received)
QUANTITIES = Kind("quantity", QuantityIn, QuantityObserved, repo.QUANTITY, "observation_id", _quantity_row, _quantity_event, _received)


class BatchRejected(BillingError):
    """`atomic=true`: one record could not be accepted, so none was."""

    status_code = 422
    code = "batch_rejected"


@dataclass
class Outcome:
    """The answer to one batch: one result per record, in order (plain dicts, serialised once)."""

    kind: str
    results: list[dict[str, Any]]

    def counts(self) -> dict[str, int]:
        return _counts(r["status"] for r in self.results)

    def body(self) -> bytes:
        """The `BatchResult` JSON."""
        return to_json({**self.counts(), "results": self.results})

    def count_metrics(self) -> None:
        _count_metrics(self.kind, self.counts())

    def refusals(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] in (Status.REJECTED, Status.CONFLICT)]


def _counts(statuses: Iterable[str]) -> dict[str, int]:
    """Records by status, every status present (the counts of a `BatchResult`)."""
    counts = {status.value: 0 for status in Status}
    for status in statuses:
        counts[status] += 1
    return counts


def _count_metrics(kind: str, counts: dict[str, int]) -> None:
    for status, n in counts.items():
        if n:
            RECORDS.labels(kind, status).inc(n)


def _result(index: int, record_id: str | None, status: Status, *, result: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "id": record_id, "status": status.value, "code": None, "field": None, "message": None, "result": result}


def _refused(index: int, record_id: str | None, status: Status, code: str, field: str | None, message: str) -> dict[str, Any]:
    return {"index": index, "id": record_id, "status": status.value, "code": code, "field": field, "message": message, "result": None}


def _conflict(index: int, record_id: str) -> dict[str, Any]:
    return _refused(index, record_id, Status.CONFLICT, "id_conflict", "id", "a different record with this id was already accepted; nothing was changed")


def _posted_again(index: int, record_id: str, stored: Any, digest: str, answer: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A record whose id is already stored: a duplicate with the stored answer if its content is the same, else a conflict."""
    return _result(index, record_id, Status.DUPLICATE, result=answer(stored)) if stored.content_hash == digest else _conflict(index, record_id)


def _unknown_customer(index: int, record_id: str, customer_id: str) -> dict[str, Any]:
    return _refused(index, record_id, Status.REJECTED, "unknown_customer", "customer_id", f"no customer {customer_id!r}; post it to /v1/customers first")


def batch_rejected(refused: list[dict[str, Any]], total: int, what: str) -> BatchRejected:
    """The refusal of a whole batch of `total` records (`what`), listing each refused one."""
    errors = [{k: r[k] for k in ("index", "id", "code", "field", "message")} for r in refused]
    return BatchRejected(f"{len(refused)} of {total} {what} cannot be accepted; nothing was written", errors=errors)


def _rejection(index: int, raw: Any, error: ValidationError) -> dict[str, Any]:
    r = rejection(index, raw, error)
    return _refused(index, r.id, Status.REJECTED, r.code or "invalid_value", r.field, r.message or "invalid")


def _validate(kind: Kind, raw_records: list[Any]) -> list[tuple[int, Any] | dict[str, Any]]:
    """Each record as its model, or its rejection. The whole batch in one call while it is valid
    (the usual case); only a batch with a bad record is judged again one record at a time."""
    try:
        return list(enumerate(kind.batch.validate_python(raw_records)))
    except ValidationError:
        pass
    judged: list[tuple[int, Any] | dict[str, Any]] = []
    for index, raw in enumerate(raw_records):
        try:
            judged.append((index, kind.model.model_validate(raw)))
        except ValidationError as exc:
            judged.append(_rejection(index, raw, exc))
    return judged


def _hashes(kind: Kind, records: list[Any]) -> list[str]:
    """`content_hash` of each record, with the JSON dump of the batch made in one call."""
    return [_digest(dumped) for dumped in kind.batch.dump_python(records, mode="json")]


async def ingest_records(runtime: ServiceRuntime, session: AsyncSession, tenant: str, kind: Kind, raw_records: list[Any], *, atomic: bool = False) -> Outcome:
    """Validate, store and emit a batch of create-only records (orders, usage, quantities): one
    validation of the batch, two reads and two multi-row writes (records, outbox) whatever its size.
    `atomic`: a batch with a rejected or conflicting record is refused whole (422
    `batch_rejected`, nothing written); duplicates are fine (posting again changes nothing)."""
    with tracer.start_as_current_span(f"ingest {kind.name}", attributes={"billing.tenant": tenant, "billing.records": len(raw_records)}):
        BATCH_SIZE.labels(kind.name).observe(len(raw_records))
        outcome = await _ingest_records(runtime, session, tenant, kind, raw_records)
        # Refused whole: raising rolls back the caller's transaction, so nothing of it is written.
        if atomic and (refused := outcome.refusals()):
            ATOMIC_REFUSED.labels(kind.name).inc()
            raise batch_rejected(refused, len(raw_records), "records")
        outcome.count_metrics()
        return outcome


async def _ingest_records(runtime: ServiceRuntime, session: AsyncSession, tenant: str, kind: Kind, raw_records: list[Any]) -> Outcome:
    now = runtime.clock.now()
    results: list[dict[str, Any] | None] = [None] * len(raw_records)
    valid: list[tuple[int, Any]] = []
    with tracer.start_as_current_span("ingest validate"):
        for judged in _validate(kind, raw_records):
            if isinstance(judged, dict):
                results[judged["index"]] = judged
            else:
                valid.append(judged)
        digests = _hashes(kind, [record for _, record in valid])

    candidates: list[tuple[int, Any, str]] = []
    first_in_batch: dict[str, tuple[int, str]] = {}
    repeats: list[tuple[int, str, str]] = []
    for (index, record), digest in zip(valid, digests, strict=True):
        seen = first_in_batch.get(record.id)
        if seen is not None:
            repeats.append((index, record.id, digest))
            continue
        first_in_batch[record.id] = (index, digest)
        candidates.append((index, record, digest))

    accounts = await repo.account_ids(session, tenant, {rec.customer_id for _, rec, _ in candidates})
    stored = await repo.existing(session, kind.table, kind.id_column, tenant, [rec.id for _, rec, _ in candidates])
    # Rating's catalogue: orders of unknown products, negative usage without credits (one lookup).
    refused = await catalogue.refusals(session, tenant, kind.name, [(index, rec) for index, rec, _ in candidates if rec.id not in stored])

    new_rows: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, record, digest in candidates:
        previous = stored.get(record.id)
        if previous is not None:
            results[index] = _posted_again(index, record.id, previous, digest, kind.result)
            continue
        account = accounts.get(record.customer_id)
        if account is None:
            results[index] = _unknown_customer(index, record.id, record.customer_id)
            continue
        if index in refused:
            results[index] = _refused(index, record.id, Status.REJECTED, *refused[index])
            continue
        row = kind.to_row(tenant, record, account, now)
        row["content_hash"] = digest
        new_rows[record.id] = (index, row)

    inserted = await repo.insert_new(session, kind.table, kind.id_column, [row for _, row in new_rows.values()])
    raced = [rid for rid in new_rows if rid not in inserted]
    winners = await repo.existing(session, kind.table, kind.id_column, tenant, raced) if raced else {}
    accepted: list[dict[str, Any]] = []
    for record_id, (index, row) in new_rows.items():
        if record_id in inserted:
            results[index] = _result(index, record_id, Status.ACCEPTED, result=kind.result(RowView(row)))
            accepted.append(row)
        else:
            results[index] = _posted_again(index, record_id, winners[record_id], row["content_hash"], kind.result)
    events = build_events(kind, runtime.name, tenant, now, accepted)
    # Usage in batched content mode: one message per account and chunk (billing_runtime.outbox).
    if kind is USAGE:
        await runtime.outbox.add_batched(session, events)
    else:
        await runtime.outbox.add_many(session, events)

    for index, record_id, digest in repeats:
        first_index, first_digest = first_in_batch[record_id]
        first = results[first_index]
        assert first is not None
        if digest != first_digest:
            results[index] = _conflict(index, record_id)
        elif first["status"] in (Status.ACCEPTED, Status.DUPLICATE):
            results[index] = _result(index, record_id, Status.DUPLICATE, result=first["result"])
        else:
            results[index] = {**first, "index": index}

    return Outcome(kind.name, [r for r in results if r is not None])


def _summarise(kind: str, results: list[RecordResult]) -> BatchResult:
    counts = _counts(r.status.value for r in results)
    _count_metrics(kind, counts)
    return BatchResult(**counts, results=results)


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
            "contact_name": record.contact_name,
            "contact_phone": record.contact_phone,
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
                    contact_name=record.contact_name,
                    contact_phone=record.contact_phone,
                    revision=revision,
                ),
                tenant=tenant,
                event_id=derived_event_id("customer", tenant, record.id, str(revision)),
                subject=record.id,
            )
        )
    await runtime.outbox.add(session, *events)
    return _summarise("customer", results)


class RowView:
    """Attribute access over a row dict, so the answer to a record reads new and stored rows alike."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.__dict__.update(row)
