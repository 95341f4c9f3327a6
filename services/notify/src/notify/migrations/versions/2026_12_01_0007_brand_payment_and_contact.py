"""brands say how to pay and whom to ask (bank account for transfers, support contact, portal);
known invoices keep their hosted document link, so a reminder can link the invoice

Revision ID: 0007_brand_payment_and_contact
Revises: 0006_sealed_webhook_secrets
Create Date: 2026-12-01 16:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_brand_payment_and_contact"
down_revision: str | None = "0006_sealed_webhook_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BRAND = ("support_email", "support_phone", "portal_url", "bank_account_name", "iban", "bic")


def upgrade() -> None:
    for column in _BRAND:
        op.add_column("brand", sa.Column(column, sa.Text(), nullable=True), schema="notify")
    op.add_column("known_invoice", sa.Column("document_url", sa.Text(), nullable=True), schema="notify")


def downgrade() -> None:
    op.drop_column("known_invoice", "document_url", schema="notify")
    for column in reversed(_BRAND):
        op.drop_column("brand", column, schema="notify")
