"""historic orders: the request date of an imported order or change, and rating's closed periods

Revision ID: api_ui_0007
Revises: 0006
Create Date: 2026-12-01 19:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "api_ui_0007"
down_revision: str | None = "consumers_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "usage_ingest"


def upgrade() -> None:
    op.add_column("order", sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True), schema=S)
    op.add_column("order_change", sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True), schema=S)
    op.create_table(
        "closed_period",
        sa.Column("bill_run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seller_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bill_run_id", name=op.f("pk_closed_period")),
        schema=S,
    )
    op.create_index(op.f("ix_closed_period_seller_id"), "closed_period", ["seller_id"], unique=False, schema=S)


def downgrade() -> None:
    op.drop_index(op.f("ix_closed_period_seller_id"), table_name="closed_period", schema=S)
    op.drop_table("closed_period", schema=S)
    op.drop_column("order_change", "requested_at", schema=S)
    op.drop_column("order", "requested_at", schema=S)
