"""refunds of paid invoices: where each refund goes, credit notes applied, bank accounts, SEPA refund files

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    for column in ('refund_to', 'method', 'credit_note_number'):
        op.add_column('refund', sa.Column(column, TEXT(), nullable=True), schema='payments')
    op.create_table('credit_note_applied',
    sa.Column('tenant', TEXT(), nullable=False),
    sa.Column('credit_note_id', TEXT(), nullable=False),
    sa.Column('invoice_id', TEXT(), nullable=False),
    sa.Column('amount', sa.Numeric(), nullable=False),
    sa.Column('currency', TEXT(), nullable=False),
    sa.Column('refund_to', TEXT(), nullable=False),
    sa.Column('to_return', sa.Numeric(), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'credit_note_id', name=op.f('pk_credit_note_applied')),
    schema='payments'
    )
    op.create_table('bank_account',
    sa.Column('tenant', TEXT(), nullable=False),
    sa.Column('owner', TEXT(), nullable=False),
    sa.Column('name', TEXT(), nullable=False),
    sa.Column('iban', TEXT(), nullable=False),
    sa.Column('bic', TEXT(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'owner', name=op.f('pk_bank_account')),
    schema='payments'
    )
    op.create_table('refund_file',
    sa.Column('tenant', TEXT(), nullable=False),
    sa.Column('file_id', TEXT(), nullable=False),
    sa.Column('refund_id', TEXT(), nullable=False),
    sa.Column('message_id', TEXT(), nullable=False),
    sa.Column('end_to_end_id', TEXT(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'file_id', name=op.f('pk_refund_file')),
    sa.UniqueConstraint('refund_id', name=op.f('uq_refund_file_refund_id')),
    schema='payments'
    )


def downgrade() -> None:
    op.drop_table('refund_file', schema='payments')
    op.drop_table('bank_account', schema='payments')
    op.drop_table('credit_note_applied', schema='payments')
    for column in ('credit_note_number', 'method', 'refund_to'):
        op.drop_column('refund', column, schema='payments')
