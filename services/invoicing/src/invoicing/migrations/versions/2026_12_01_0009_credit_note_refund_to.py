"""credit notes on paid invoices: where the seller sends the money back

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('credit_note', sa.Column('refund_to', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema='invoicing')
    op.add_column('credit_note', sa.Column('amount_to_return', sa.Numeric(), nullable=True), schema='invoicing')


def downgrade() -> None:
    op.drop_column('credit_note', 'amount_to_return', schema='invoicing')
    op.drop_column('credit_note', 'refund_to', schema='invoicing')
