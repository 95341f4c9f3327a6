"""the projection of rating's catalogue (ProductPublished): orders of unknown products and
negative usage of products that take no credits are refused at the edge

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "usage_ingest"


def upgrade() -> None:
    op.create_table(
        "catalogue_product",
        sa.Column("seller_id", sa.String(), nullable=False),
        sa.Column("product_code", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("quantity_rule", sa.String(), nullable=False),
        sa.Column("allows_credits", sa.Boolean(), nullable=False),
        sa.Column("wholesale", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "product_code", name=op.f("pk_catalogue_product")),
        schema=S,
    )
    op.create_index(op.f("ix_catalogue_product_product_code"), "catalogue_product", ["product_code"], unique=False, schema=S)


def downgrade() -> None:
    op.drop_index(op.f("ix_catalogue_product_product_code"), table_name="catalogue_product", schema=S)
    op.drop_table("catalogue_product", schema=S)
