"""documents: the seller's bank account, SEPA creditor id and logo; the buyers' direct-debit mandates

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 16:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('seller_settings', sa.Column('logo', sa.Text(), nullable=True), schema='invoicing')
    op.add_column('seller_settings', sa.Column('iban', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema='invoicing')
    op.add_column('seller_settings', sa.Column('bic', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema='invoicing')
    op.add_column('seller_settings', sa.Column('sepa_creditor_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True), schema='invoicing')
    op.create_table('buyer_mandate',
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seller_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mandate_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_buyer_mandate')),
    schema='invoicing'
    )
    op.create_index(op.f('ix_invoicing_buyer_mandate_seller_id'), 'buyer_mandate', ['seller_id'], unique=False, schema='invoicing')


def downgrade() -> None:
    op.drop_index(op.f('ix_invoicing_buyer_mandate_seller_id'), table_name='buyer_mandate', schema='invoicing')
    op.drop_table('buyer_mandate', schema='invoicing')
    op.drop_column('seller_settings', 'sepa_creditor_id', schema='invoicing')
    op.drop_column('seller_settings', 'bic', schema='invoicing')
    op.drop_column('seller_settings', 'iban', schema='invoicing')
    op.drop_column('seller_settings', 'logo', schema='invoicing')
