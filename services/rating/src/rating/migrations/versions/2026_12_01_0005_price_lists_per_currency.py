"""a seller's price lists per currency: the currency is part of a price entry's key; a seller
profile lists the currencies it bills in

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "rating"


def upgrade() -> None:
    # A markup entry has no currency of its own (its base's): '' in the key, None in the API.
    op.execute("UPDATE rating.price SET currency = '' WHERE currency IS NULL")
    op.alter_column("price", "currency", existing_type=sa.String(), nullable=False, server_default="", schema=S)
    op.drop_constraint("pk_price", "price", type_="primary", schema=S)
    op.create_primary_key("pk_price", "price", ["seller_id", "product_code", "effective_from", "currency"], schema=S)
    op.add_column(
        "seller_profile",
        sa.Column("currencies", postgresql.ARRAY(sa.String()), nullable=False, server_default=sa.text("'{}'::varchar[]")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("seller_profile", "currencies", schema=S)
    # Keeps one entry per (seller, product, date): the one whose currency sorts first.
    op.execute(
        "DELETE FROM rating.price p USING rating.price q WHERE p.seller_id = q.seller_id AND p.product_code = q.product_code"
        " AND p.effective_from = q.effective_from AND p.currency > q.currency"
    )
    op.drop_constraint("pk_price", "price", type_="primary", schema=S)
    op.create_primary_key("pk_price", "price", ["seller_id", "product_code", "effective_from"], schema=S)
    op.alter_column("price", "currency", existing_type=sa.String(), nullable=True, server_default=None, schema=S)
    op.execute("UPDATE rating.price SET currency = NULL WHERE currency = ''")
