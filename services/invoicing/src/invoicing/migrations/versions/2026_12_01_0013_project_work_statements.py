"""project-work statements (seed 001) and their own number series per seller

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_work_statement",
        sa.Column("statement_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seller_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("buyer_account_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("entry_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("tier", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("seller", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("buyer", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("end_customer_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("end_customer_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("product_code", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("performed_on", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("unit_price", sa.Numeric(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("billed_with_period_start", sa.Date(), nullable=False),
        sa.Column("billed_with_period_end", sa.Date(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("statement_id", name=op.f("pk_project_work_statement")),
        sa.UniqueConstraint("seller_id", "entry_id", name="uq_project_work_statement_seller_entry"),
        sa.UniqueConstraint("seller_id", "seq", name="uq_project_work_statement_seller_seq"),
        schema="invoicing",
    )
    op.create_index(op.f("ix_invoicing_project_work_statement_seller_id"), "project_work_statement", ["seller_id"], unique=False, schema="invoicing")
    op.create_table(
        "project_work_statement_counter",
        sa.Column("seller_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", name=op.f("pk_project_work_statement_counter")),
        schema="invoicing",
    )


def downgrade() -> None:
    op.drop_table("project_work_statement_counter", schema="invoicing")
    op.drop_index(op.f("ix_invoicing_project_work_statement_seller_id"), table_name="project_work_statement", schema="invoicing")
    op.drop_table("project_work_statement", schema="invoicing")
