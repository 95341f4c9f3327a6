"""price lists, billing policies, seller profiles, discounts, two tiers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 23:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "rating"


def upgrade() -> None:
    op.alter_column("product", "unit_price", existing_type=sa.Numeric(), nullable=True, schema=S)
    op.alter_column("product", "currency", existing_type=sa.String(), nullable=True, schema=S)
    op.add_column("product", sa.Column("unit", sa.String(), nullable=True), schema=S)
    op.add_column("product", sa.Column("tax_category", sa.String(), nullable=True), schema=S)
    op.add_column("product", sa.Column("kind", sa.String(), nullable=False, server_default="recurring"), schema=S)
    op.add_column("product", sa.Column("policy", postgresql.JSONB(astext_type=sa.Text()), nullable=True), schema=S)

    op.create_table(
        "price",
        sa.Column("seller_id", sa.String(), nullable=False),
        sa.Column("product_code", sa.String(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("model", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "product_code", "effective_from", name=op.f("pk_price")),
        schema=S,
    )
    op.create_table(
        "seller_profile",
        sa.Column("seller_id", sa.String(), nullable=False),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("country", sa.String(), nullable=True),
        sa.Column("time_zone", sa.String(), nullable=False),
        sa.Column("issue_day", sa.Integer(), nullable=True),
        sa.Column("scheduled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", name=op.f("pk_seller_profile")),
        schema=S,
    )
    op.create_table(
        "subscription_policy",
        sa.Column("seller_id", sa.String(), nullable=False),
        sa.Column("subscription_id", sa.String(), nullable=False),
        sa.Column("policy", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "subscription_id", name=op.f("pk_subscription_policy")),
        schema=S,
    )
    op.create_table(
        "discount",
        sa.Column("seller_id", sa.String(), nullable=False),
        sa.Column("discount_id", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("product_code", sa.String(), nullable=True),
        sa.Column("subscription_id", sa.String(), nullable=True),
        sa.Column("percent", sa.Numeric(), nullable=True),
        sa.Column("amount", sa.Numeric(), nullable=True),
        sa.Column("first_period", sa.String(), nullable=False),
        sa.Column("periods", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seller_id", "discount_id", name=op.f("pk_discount")),
        schema=S,
    )
    op.add_column("subscription", sa.Column("setup_exempt", sa.Boolean(), nullable=False, server_default=sa.false()), schema=S)
    op.add_column("usage_record", sa.Column("cost", sa.Numeric(), nullable=True), schema=S)
    op.add_column("usage_record", sa.Column("cost_currency", sa.String(), nullable=True), schema=S)
    op.add_column("usage_record", sa.Column("wholesale_bill_run_id", sa.String(), nullable=True), schema=S)
    op.create_index(op.f("ix_rating_usage_record_wholesale_bill_run_id"), "usage_record", ["wholesale_bill_run_id"], unique=False, schema=S)
    op.add_column("bill_run", sa.Column("tier", sa.String(), nullable=False, server_default="retail"), schema=S)
    op.add_column("rated_charge", sa.Column("end_customer_id", sa.String(), nullable=True), schema=S)
    op.add_column("rated_charge", sa.Column("kind", sa.String(), nullable=False, server_default="recurring"), schema=S)
    op.add_column("rated_charge", sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()), schema=S)


def downgrade() -> None:
    op.drop_column("rated_charge", "late", schema=S)
    op.drop_column("rated_charge", "kind", schema=S)
    op.drop_column("rated_charge", "end_customer_id", schema=S)
    op.drop_column("bill_run", "tier", schema=S)
    op.drop_index(op.f("ix_rating_usage_record_wholesale_bill_run_id"), table_name="usage_record", schema=S)
    op.drop_column("usage_record", "wholesale_bill_run_id", schema=S)
    op.drop_column("usage_record", "cost_currency", schema=S)
    op.drop_column("usage_record", "cost", schema=S)
    op.drop_column("subscription", "setup_exempt", schema=S)
    op.drop_table("discount", schema=S)
    op.drop_table("subscription_policy", schema=S)
    op.drop_table("seller_profile", schema=S)
    op.drop_table("price", schema=S)
    op.drop_column("product", "policy", schema=S)
    op.drop_column("product", "kind", schema=S)
    op.drop_column("product", "tax_category", schema=S)
    op.drop_column("product", "unit", schema=S)
    op.execute("DELETE FROM rating.product WHERE unit_price IS NULL OR currency IS NULL")
    op.alter_column("product", "currency", existing_type=sa.String(), nullable=False, schema=S)
    op.alter_column("product", "unit_price", existing_type=sa.Numeric(), nullable=False, schema=S)
