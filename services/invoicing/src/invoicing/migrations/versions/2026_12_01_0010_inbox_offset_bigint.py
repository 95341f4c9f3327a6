"""the inbox's offset as BIGINT (Kafka offsets are int64; billing_runtime.inbox)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00
"""
from collections.abc import Sequence

from alembic import op

from billing_runtime.inbox import narrow_inbox_offset, widen_inbox_offset

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    widen_inbox_offset(op, "invoicing")


def downgrade() -> None:
    narrow_inbox_offset(op, "invoicing")
