from __future__ import annotations

from sqlmodel import SQLModel

from billing_runtime.conventions import http_tables
from billing_runtime.db import schema_registry
from billing_runtime.service import runtime_tables

SCHEMA = "usage_ingest"
registry = schema_registry(SCHEMA)
metadata = registry.metadata


class Base(SQLModel, registry=registry):
    pass


# The unsent rows' ids in `outbox_pending`: the relay's mark-sent is a HOT update (billing_runtime.outbox).
outbox, inbox = runtime_tables(metadata, outbox_pending=True)
idempotency, audit = http_tables(metadata)
