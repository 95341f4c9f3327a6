"""invoice comparison reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('comparison_report',
    sa.Column('report_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seller_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('buyer_account_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('previous_invoice_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('this_period_total', sa.Numeric(), nullable=False),
    sa.Column('last_period_total', sa.Numeric(), nullable=False),
    sa.Column('rows', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoicing.invoice.invoice_id'], name=op.f('fk_comparison_report_invoice_id_invoice')),
    sa.PrimaryKeyConstraint('report_id', name=op.f('pk_comparison_report')),
    sa.UniqueConstraint('invoice_id', name=op.f('uq_comparison_report_invoice_id')),
    schema='invoicing'
    )
    op.create_index(op.f('ix_invoicing_comparison_report_seller_id'), 'comparison_report', ['seller_id'], unique=False, schema='invoicing')


def downgrade() -> None:
    op.drop_index(op.f('ix_invoicing_comparison_report_seller_id'), table_name='comparison_report', schema='invoicing')
    op.drop_table('comparison_report', schema='invoicing')
