"""credit notes, their lines and their number series

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 23:55:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = 'invoicing'


def upgrade() -> None:
    op.create_table('credit_note_number_counter',
    sa.Column('seller_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('seller_id', name=op.f('pk_credit_note_number_counter')),
    schema=S
    )
    op.create_table('credit_note',
    sa.Column('credit_note_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seller_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('invoice_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('buyer_account_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('number', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('net_total', sa.Numeric(), nullable=False),
    sa.Column('tax_total', sa.Numeric(), nullable=False),
    sa.Column('total', sa.Numeric(), nullable=False),
    sa.Column('tax_breakdown', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoicing.invoice.invoice_id'], name=op.f('fk_credit_note_invoice_id_invoice')),
    sa.PrimaryKeyConstraint('credit_note_id', name=op.f('pk_credit_note')),
    sa.UniqueConstraint('seller_id', 'idempotency_key', name='uq_credit_note_seller_idempotency_key'),
    sa.UniqueConstraint('seller_id', 'seq', name='uq_credit_note_seller_seq'),
    schema=S
    )
    op.create_index(op.f('ix_invoicing_credit_note_invoice_id'), 'credit_note', ['invoice_id'], unique=False, schema=S)
    op.create_table('credit_note_line',
    sa.Column('credit_note_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('line_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('product_code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('service_period_start', sa.Date(), nullable=False),
    sa.Column('service_period_end', sa.Date(), nullable=False),
    sa.Column('quantity', sa.Numeric(), nullable=False),
    sa.Column('unit_price', sa.Numeric(), nullable=False),
    sa.Column('net', sa.Numeric(), nullable=False),
    sa.Column('tax_rate', sa.Numeric(), nullable=False),
    sa.Column('tax_category', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('tax_scheme', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('tax_country', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['credit_note_id'], ['invoicing.credit_note.credit_note_id'], name=op.f('fk_credit_note_line_credit_note_id_credit_note')),
    sa.PrimaryKeyConstraint('credit_note_id', 'position', name=op.f('pk_credit_note_line')),
    schema=S
    )


def downgrade() -> None:
    op.drop_table('credit_note_line', schema=S)
    op.drop_index(op.f('ix_invoicing_credit_note_invoice_id'), table_name='credit_note', schema=S)
    op.drop_table('credit_note', schema=S)
    op.drop_table('credit_note_number_counter', schema=S)
