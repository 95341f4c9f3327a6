from __future__ import annotations

from sqlmodel import SQLModel

from billing_runtime.conventions import http_tables
from billing_runtime.db import schema_registry
from billing_runtime.service import runtime_tables

SCHEMA = "dunning"
registry = schema_registry(SCHEMA)
metadata = registry.metadata


class Base(SQLModel, registry=registry):
    pass


outbox, inbox = runtime_tables(metadata)
idempotency, audit = http_tables(metadata)
