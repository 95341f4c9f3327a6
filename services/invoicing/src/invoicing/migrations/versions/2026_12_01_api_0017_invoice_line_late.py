"""invoice lines keep rating's `late` flag: usage or a term of an earlier, already closed period

Revision ID: api_inv_0014
Revises: 0013
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "api_inv_0014"
down_revision: str | None = "consumers_0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invoice_line", sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()), schema="invoicing")


def downgrade() -> None:
    op.drop_column("invoice_line", "late", schema="invoicing")
