"""the outbox's unsent rows listed in outbox_pending, not by a partial index on sent_at (the relay's
mark-sent becomes a HOT update: issue 10, ingest throughput)

Revision ID: perf_ingest_0007
Revises: 0006
Create Date: 2026-12-01 19:45:00
"""

from collections.abc import Sequence

from alembic import op

from billing_runtime.outbox import add_pending_sql, drop_pending_sql

revision: str = "perf_ingest_0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "usage_ingest"


def upgrade() -> None:
    for statement in add_pending_sql(S):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_pending_sql(S):
        op.execute(statement)
