"""attempt states: processing, unknown since, surplus of a second success; collection settings

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempt", sa.Column("unknown_since", sa.DateTime(timezone=True), nullable=True), schema="payments")
    op.add_column("attempt", sa.Column("surplus", sa.Numeric(), nullable=True), schema="payments")
    op.add_column("attempt", sa.Column("surplus_action", sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema="payments")
    # `pending` used to mean both "not sent yet" and "the provider has it": the second is `processing` now.
    op.execute("UPDATE payments.attempt SET status = 'processing' WHERE status = 'pending' AND provider_ref IS NOT NULL")
    op.execute("UPDATE payments.attempt SET unknown_since = updated_at WHERE status = 'unknown'")
    op.create_index(
        "ix_payments_attempt_open_due", "attempt", ["next_call_at"], unique=False, schema="payments",
        postgresql_where=sa.text("status IN ('pending', 'processing', 'unknown')"),
    )
    op.alter_column("refund", "credit_note_id", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=True, schema="payments")
    op.create_table(
        "collection_setting",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("surplus", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_collection_setting")),
        schema="payments",
    )


def downgrade() -> None:
    op.drop_table("collection_setting", schema="payments")
    op.execute("UPDATE payments.refund SET credit_note_id = '' WHERE credit_note_id IS NULL")
    op.alter_column("refund", "credit_note_id", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False, schema="payments")
    op.drop_index("ix_payments_attempt_open_due", table_name="attempt", schema="payments")
    op.execute("UPDATE payments.attempt SET status = 'pending' WHERE status = 'processing'")
    op.drop_column("attempt", "surplus_action", schema="payments")
    op.drop_column("attempt", "surplus", schema="payments")
    op.drop_column("attempt", "unknown_since", schema="payments")
