"""a customer's contact person and phone (the billing profile an end customer edits in the portal)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "usage_ingest"


def upgrade() -> None:
    op.add_column("customer", sa.Column("contact_name", sa.String(), nullable=True), schema=S)
    op.add_column("customer", sa.Column("contact_phone", sa.String(), nullable=True), schema=S)


def downgrade() -> None:
    op.drop_column("customer", "contact_phone", schema=S)
    op.drop_column("customer", "contact_name", schema=S)
