"""API models: one per record kind, validated one record at a time."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import from_json

from billing_events import Address, DecimalStr, Money, ObservedItem
from billing_runtime.api import Page

MAX_BATCH = 1000
ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerIn(Record):
    id: str = ID
    name: str = Field(min_length=1, max_length=200)
    billing_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    country: str = Field(pattern="^[A-Z]{2}$")
    currency: str = Field(pattern="^[A-Z]{3}$")
    business: bool = True
    vat_id: str | None = Field(default=None, max_length=20)
    address: Address | None = None
    tax_exempt: bool = False
    contact_name: str | None = Field(default=None, min_length=1, max_length=200, description="The person to contact about billing.")
    contact_phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()./-]{3,28}[0-9]$")


class OrderIn(Record):
    id: str = ID
    customer_id: str = ID
    product_code: str = Field(min_length=1, max_length=64)
    quantity: DecimalStr
    start_date: date
    setup_exempt: bool = Field(default=False, description="No setup fee for this order (e.g. a migration customer).")

    @model_validator(mode="after")
    def _positive(self) -> OrderIn:
        if self.quantity <= 0:
            raise ValueError("quantity must be positive")
        return self


class OrderChangeIn(Record):
    """A new quantity for an ordered subscription, from `effective_date` (default: today)."""

    id: str = ID
    quantity: DecimalStr
    effective_date: date | None = None

    @model_validator(mode="after")
    def _not_negative(self) -> OrderChangeIn:
        if self.quantity < 0:
            raise ValueError("quantity cannot be negative")
        return self


class CancellationIn(Record):
    """Cancel an ordered subscription; `effective_date` is the last day the partner asks for
    (default: today); rating applies the notice, commitment and cut-offs of its policy."""

    id: str = ID
    effective_date: date | None = None


class HistoricOrderIn(OrderIn):
    """An order from the partner's previous system: `requested_at` is when its customer asked for it
    (rating takes it as the order's date: cut-off, first period, setup fee's period)."""

    kind: Literal["order"]
    requested_at: AwareDatetime


class HistoricChangeIn(OrderChangeIn):
    """A quantity change from the previous system's history; `effective_date` defaults to the request's day."""

    kind: Literal["change"]
    order_id: str = ID
    requested_at: AwareDatetime


class HistoricCancellationIn(CancellationIn):
    """A cancellation from the previous system's history; rating applies notice and commitment from `requested_at`."""

    kind: Literal["cancellation"]
    order_id: str = ID
    requested_at: AwareDatetime


HistoryItem = Annotated[HistoricOrderIn | HistoricChangeIn | HistoricCancellationIn, Field(discriminator="kind")]


def history_item_schema() -> dict[str, Any]:
    """The JSON Schema of one history item with its three shapes inline (`oneOf`, told apart by
    `kind`), for the OpenAPI of a route that reads its body raw: pydantic's `$defs` would not resolve there."""
    schema = TypeAdapter(HistoryItem).json_schema()
    defs = schema.pop("$defs", {})
    return {"oneOf": [defs[ref["$ref"].rsplit("/", 1)[-1]] for ref in schema["oneOf"]]}


class UsageIn(Record):
    id: str = ID
    customer_id: str = ID
    product_code: str = Field(min_length=1, max_length=64)
    quantity: DecimalStr
    timestamp: AwareDatetime
    cost: Money | None = None


class QuantityIn(Record):
    id: str = ID
    customer_id: str = ID
    product_code: str = Field(min_length=1, max_length=64)
    observed_at: AwareDatetime
    source: str = Field(min_length=1, max_length=64)
    quantity: DecimalStr | None = None
    items: list[ObservedItem] | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _count_or_items(self) -> QuantityIn:
        if (self.quantity is None) == (self.items is None):
            raise ValueError("give either quantity or items")
        if self.quantity is not None and self.quantity < 0:
            raise ValueError("quantity cannot be negative")
        return self


class Batch(BaseModel):
    """Records stay raw here so that one bad record is rejected alone, not the whole batch."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The records of a posted `{"records": [...]}` body, parsed once; a malformed body is the same
    422 `validation_error` FastAPI gives for a `Batch` parameter. Records stay raw (see `Batch`)."""
    try:
        data = from_json(body)
    except ValueError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {exc}"}]) from None
    if b"\\u0000" in body and _has_nul(data):
        # PostgreSQL text and jsonb cannot hold U+0000: refused here rather than failing on insert.
        raise RequestValidationError([{"type": "string_nul", "loc": ("body",), "msg": "strings may not contain U+0000"}])
    records = data.get("records") if isinstance(data, dict) and len(data) == 1 else None
    if isinstance(records, list) and 1 <= len(records) <= MAX_BATCH and all(isinstance(r, dict) for r in records):
        return records
    try:
        return Batch.model_validate(data).records
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


class RecordResult(BaseModel):
    index: int
    id: str | None
    status: Status
    code: str | None = None
    field: str | None = None
    message: str | None = None
    result: dict[str, Any] | None = None


class CustomerOut(BaseModel):
    """A customer as accepted, at its latest revision."""

    external_id: str = Field(description="The partner's own id of the customer.")
    account_id: str = Field(description="Its billing account id, which the other services take.")
    name: str
    billing_email: str
    country: str
    currency: str
    business: bool
    vat_id: str | None
    address: Address | None
    tax_exempt: bool
    contact_name: str | None
    contact_phone: str | None
    revision: int
    updated_at: datetime


class CustomerPage(Page[CustomerOut]):
    """One page of the partner's customers, by id (`next_cursor` goes in `after`)."""


class OrderOut(BaseModel):
    """An order as accepted."""

    order_id: str
    subscription_id: str
    account_id: str
    product_code: str
    quantity: DecimalStr
    start_on: date
    setup_exempt: bool
    received_at: datetime
    requested_at: datetime | None = Field(
        description="When the customer asked, for an order imported from history; null for a live order (its request is received_at)."
    )


class OrderChangeOut(BaseModel):
    """A quantity change or cancellation as accepted (or as first accepted, for a repeat)."""

    id: str
    order_id: str
    kind: Literal["quantity", "cancellation"]
    quantity: str | None
    effective_on: str = Field(description="ISO date.")
    received_at: str = Field(description="ISO date-time.")
    status: Literal["accepted", "duplicate"]


class UsageOut(BaseModel):
    """A usage record as accepted."""

    record_id: str = Field(description="The partner's own id of the record.")
    account_id: str
    product_code: str
    quantity: DecimalStr
    occurred_at: datetime = Field(description="The record's `timestamp`.")
    cost: Money | None = Field(description="The partner's own cost of this usage, if it sent one.")
    received_at: datetime


class BillingProfileOut(BaseModel):
    """A customer's billing profile, at its latest revision."""

    account_id: str
    customer_id: str = Field(description="The partner's own id of the customer.")
    name: str
    country: str
    currency: str
    billing_email: str
    contact_name: str | None
    contact_phone: str | None
    address_lines: list[str] = Field(description="Street lines of the address; empty without an address.")
    city: str | None
    postal_code: str | None
    region: str | None
    vat_id: str | None
    revision: int
    updated_at: datetime


class BillingProfileSaved(BillingProfileOut):
    """The profile as saved."""

    changed: bool = Field(description="false when the profile was already this one (no new revision, no event).")


class AccountRef(BaseModel):
    """A partner's customer and the billing account id the other services know it by."""

    customer_id: str = Field(description="The partner's own id of the customer.")
    account_id: str = Field(description="The billing account id (derived from the tenant and the customer id).")
    name: str
    revision: int


class BatchResult(BaseModel):
    accepted: int
    duplicate: int
    conflict: int
    rejected: int
    results: list[RecordResult]


Kind = Literal["customer", "order", "usage", "quantity"]
