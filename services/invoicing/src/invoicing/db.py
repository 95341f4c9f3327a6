from __future__ import annotations

from sqlmodel import SQLModel

from billing_runtime.conventions import http_tables
from billing_runtime.db import schema_registry
from billing_runtime.service import runtime_tables

SCHEMA = "invoicing"
registry = schema_registry(SCHEMA)
metadata = registry.metadata


class Base(SQLModel, registry=registry):
    pass


outbox, inbox = runtime_tables(metadata)
# Idempotency-Key replays and the audit log of writes (billing_runtime.conventions; migration 0007).
idempotency, audit = http_tables(metadata)
