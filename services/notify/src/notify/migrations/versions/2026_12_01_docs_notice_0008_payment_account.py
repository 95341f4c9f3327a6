"""payment_account: the bank account each seller's invoicing profile announces
(SellerPaymentAccountChanged), which the mails' how-to-pay shows; the brand's own bank columns
stay as they were, shown only until invoicing announces the seller's account

Revision ID: docs_notice_0008_payment_account
Revises: 0007_brand_payment_and_contact
Create Date: 2026-12-01 19:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "docs_notice_0008_payment_account"
down_revision: str | None = "0007_brand_payment_and_contact"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_account",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("account_name", sa.Text(), nullable=True),
        sa.Column("iban", sa.Text(), nullable=True),
        sa.Column("bic", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_payment_account")),
        schema="notify",
    )


def downgrade() -> None:
    op.drop_table("payment_account", schema="notify")
