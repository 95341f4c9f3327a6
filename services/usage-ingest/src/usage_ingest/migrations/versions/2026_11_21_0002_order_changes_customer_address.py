"""order changes and cancellations; customer address and tax exemption; setup exemption

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 23:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "usage_ingest"


def upgrade() -> None:
    op.add_column("customer", sa.Column("address", postgresql.JSONB(astext_type=sa.Text()), nullable=True), schema=S)
    op.add_column("customer", sa.Column("tax_exempt", sa.Boolean(), nullable=False, server_default=sa.false()), schema=S)
    op.add_column("order", sa.Column("setup_exempt", sa.Boolean(), nullable=False, server_default=sa.false()), schema=S)
    op.create_table(
        "order_change",
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("change_id", sa.String(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=True),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "change_id", name=op.f("pk_order_change")),
        schema=S,
    )
    op.create_index(op.f("ix_usage_ingest_order_change_order_id"), "order_change", ["order_id"], unique=False, schema=S)


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_ingest_order_change_order_id"), table_name="order_change", schema=S)
    op.drop_table("order_change", schema=S)
    op.drop_column("order", "setup_exempt", schema=S)
    op.drop_column("customer", "tax_exempt", schema=S)
    op.drop_column("customer", "address", schema=S)
