"""idempotency keys and the audit log (billing_runtime.conventions)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 23:59:00
"""
from collections.abc import Sequence

from alembic import op

from billing_runtime.conventions import add_http_tables, drop_http_tables

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_http_tables(op, "dunning")


def downgrade() -> None:
    drop_http_tables(op, "dunning")
