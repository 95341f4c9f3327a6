"""refunds of payments

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 00:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('refund',
    sa.Column('refund_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('payment_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seller_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('refunded_on', sa.Date(), nullable=False),
    sa.Column('credit_note_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoicing.invoice.invoice_id'], name=op.f('fk_refund_invoice_id_invoice')),
    sa.PrimaryKeyConstraint('refund_id', name=op.f('pk_refund')),
    schema='invoicing'
    )
    op.create_index(op.f('ix_invoicing_refund_invoice_id'), 'refund', ['invoice_id'], unique=False, schema='invoicing')


def downgrade() -> None:
    op.drop_index(op.f('ix_invoicing_refund_invoice_id'), table_name='refund', schema='invoicing')
    op.drop_table('refund', schema='invoicing')
