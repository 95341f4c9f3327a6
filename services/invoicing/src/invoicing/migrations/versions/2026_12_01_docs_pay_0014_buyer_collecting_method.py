"""documents: the method payments collects each buyer's invoices from (CollectingMethodChanged)

Revision ID: docs_pay_0014
Revises: 0013
Create Date: 2026-12-01 19:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = 'docs_pay_0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('buyer_collecting_method',
    sa.Column('seller_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('method_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('card_brand', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('card_last4', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('mandate_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seller_id', 'account_id', name=op.f('pk_buyer_collecting_method')),
    schema='invoicing'
    )


def downgrade() -> None:
    op.drop_table('buyer_collecting_method', schema='invoicing')
