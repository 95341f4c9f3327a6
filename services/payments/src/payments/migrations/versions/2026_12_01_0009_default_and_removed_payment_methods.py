"""a buyer's default payment method, and methods the buyer removed (the customer portal)

Revision ID: 0009_default_and_removed_methods
Revises: 0008_sealed_provider_secrets
Create Date: 2026-12-01 16:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_default_and_removed_methods"
down_revision: str | None = "0008_sealed_provider_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payment_method", sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.false()), schema="payments")
    op.add_column("payment_method", sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True), schema="payments")
    # At most one default per buyer and seller, whatever two requests do at once.
    op.create_index(
        "uq_payment_method_default", "payment_method", ["tenant", "account_id"], unique=True, schema="payments",
        postgresql_where=sa.text("is_default"),
    )


def downgrade() -> None:
    op.drop_index("uq_payment_method_default", table_name="payment_method", schema="payments")
    op.drop_column("payment_method", "removed_at", schema="payments")
    op.drop_column("payment_method", "is_default", schema="payments")
