from __future__ import annotations

from sqlmodel import SQLModel

from billing_runtime.service import service_schema

SCHEMA = "usage_ingest"
# The unsent rows' ids in `outbox_pending`: the relay's mark-sent is a HOT update (billing_runtime.outbox).
registry, metadata, outbox, inbox, idempotency, audit = service_schema(SCHEMA, outbox_pending=True)


class Base(SQLModel, registry=registry):
    pass
