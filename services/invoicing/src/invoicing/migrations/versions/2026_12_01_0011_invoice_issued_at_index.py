"""documents rendered ahead: invoices by the instant they were issued

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_invoice_issued_at', 'invoice', ['issued_at'], unique=False, schema='invoicing')


def downgrade() -> None:
    op.drop_index('ix_invoice_issued_at', table_name='invoice', schema='invoicing')
