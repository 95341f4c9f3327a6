"""tax determination, buyer and seller details, VAT number evidence, line sections

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 23:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = 'invoicing'


def upgrade() -> None:
    op.add_column('buyer', sa.Column('address', postgresql.JSONB(astext_type=sa.Text()), nullable=True), schema=S)
    op.add_column('buyer', sa.Column('tax_exempt', sa.Boolean(), server_default=sa.false(), nullable=False), schema=S)
    op.add_column('buyer', sa.Column('vat_id_valid', sa.Boolean(), server_default=sa.false(), nullable=False), schema=S)
    op.add_column('buyer', sa.Column('vat_id_note', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema=S)

    op.add_column('seller_settings', sa.Column('address', postgresql.JSONB(astext_type=sa.Text()), nullable=True), schema=S)
    op.add_column('seller_settings', sa.Column('registration', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema=S)
    op.add_column('seller_settings', sa.Column('brand_color', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema=S)

    op.add_column('invoice', sa.Column('tier', sqlmodel.sql.sqltypes.AutoString(), server_default='retail', nullable=False), schema=S)
    op.add_column('invoice', sa.Column('flags', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False), schema=S)
    op.add_column('invoice', sa.Column('credited_total', sa.Numeric(), server_default=sa.text('0'), nullable=False), schema=S)
    op.add_column('invoice', sa.Column('voided_on', sa.Date(), nullable=True), schema=S)
    op.create_index('ix_invoice_seller_issued_on', 'invoice', ['seller_id', 'issued_on'], unique=False, schema=S)

    op.add_column('invoice_line', sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), server_default='recurring', nullable=False), schema=S)
    op.add_column('invoice_line', sa.Column('timing', sqlmodel.sql.sqltypes.AutoString(), server_default='arrears', nullable=False), schema=S)
    op.add_column('invoice_line', sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema=S)
    op.add_column('invoice_line', sa.Column('end_customer_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema=S)
    op.add_column('invoice_line', sa.Column('tax_scheme', sqlmodel.sql.sqltypes.AutoString(), server_default='not_assessed', nullable=False), schema=S)
    op.add_column('invoice_line', sa.Column('tax_country', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema=S)

    op.create_table('vat_check',
    sa.Column('check_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('vat_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('checksum_valid', sa.Boolean(), nullable=False),
    sa.Column('checksum_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('vies_outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('vies_request_identifier', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('vies_response', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('check_id', name=op.f('pk_vat_check')),
    schema=S
    )
    op.create_index(op.f('ix_invoicing_vat_check_account_id'), 'vat_check', ['account_id'], unique=False, schema=S)


def downgrade() -> None:
    op.drop_index(op.f('ix_invoicing_vat_check_account_id'), table_name='vat_check', schema=S)
    op.drop_table('vat_check', schema=S)
    for column in ('tax_country', 'tax_scheme', 'end_customer_name', 'unit', 'timing', 'kind'):
        op.drop_column('invoice_line', column, schema=S)
    op.drop_index('ix_invoice_seller_issued_on', table_name='invoice', schema=S)
    for column in ('voided_on', 'credited_total', 'flags', 'tier'):
        op.drop_column('invoice', column, schema=S)
    for column in ('brand_color', 'registration', 'address'):
        op.drop_column('seller_settings', column, schema=S)
    for column in ('vat_id_note', 'vat_id_valid', 'tax_exempt', 'address'):
        op.drop_column('buyer', column, schema=S)
