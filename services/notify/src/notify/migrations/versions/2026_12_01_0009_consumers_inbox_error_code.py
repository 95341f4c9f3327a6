"""the inbox's error_code: the stable code of a dead-lettered event's error, as in its dlq_code header (billing_runtime.inbox)

Revision ID: consumers_0008
Revises: 0007_brand_payment_and_contact
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

from alembic import op

from billing_runtime.inbox import add_inbox_error_code, drop_inbox_error_code

revision: str = "consumers_0008"
down_revision: str | None = "docs_notice_0008_payment_account"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_inbox_error_code(op, "notify")


def downgrade() -> None:
    drop_inbox_error_code(op, "notify")
