"""the inbox's error_code: the stable code of a dead-lettered event's error, as in its dlq_code header (billing_runtime.inbox)

Revision ID: consumers_0010
Revises: 0009_default_and_removed_methods
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

from alembic import op

from billing_runtime.inbox import add_inbox_error_code, drop_inbox_error_code

revision: str = "consumers_0010"
down_revision: str | None = "0009_default_and_removed_methods"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_inbox_error_code(op, "payments")


def downgrade() -> None:
    drop_inbox_error_code(op, "payments")
