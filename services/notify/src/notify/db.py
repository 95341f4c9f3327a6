from __future__ import annotations

from sqlmodel import SQLModel

from billing_runtime.service import service_schema

SCHEMA = "notify"
registry, metadata, outbox, inbox, idempotency, audit = service_schema(SCHEMA)


class Base(SQLModel, registry=registry):
    pass
