"""charges_preview: the periods whose wholesale charges were announced ahead of their bill run
(ChargesRated on the first business day, seed 001's comparison report)

Revision ID: docs_notice_0007
Revises: 0006
Create Date: 2026-12-01 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "docs_notice_0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "charges_preview",
        sa.Column("seller_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("rated_on", sa.Date(), nullable=False),
        sa.Column("bill_run_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "period", name=op.f("pk_charges_preview")),
        schema="rating",
    )


def downgrade() -> None:
    op.drop_table("charges_preview", schema="rating")
