"""portal: host names of partners' portals, the brands shown before sign-in, a session's host, a user's locale, the brand edits' write keys

Revision ID: 0002_hosts
Revises: 0001
Create Date: 2026-12-01 16:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_hosts"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "portal"


def upgrade() -> None:
    op.create_table(
        "portal_host",
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_portal_host")),
        sa.UniqueConstraint("tenant", name="uq_portal_host_tenant"),
        sa.CheckConstraint("host = lower(host)", name="ck_portal_host_lower"),
        schema=S,
    )
    op.create_table(
        "portal_brand",
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("color", sa.String(7), nullable=False),
        sa.Column("logo_url", sa.String(2000), nullable=True),
        sa.Column("footer", sa.String(2000), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_portal_brand")),
        schema=S,
    )
    op.create_table(
        "write_key",
        sa.Column("key_id", sa.String(17), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_write_key")),
        schema=S,
    )
    op.create_index("ix_write_key_unrevoked", "write_key", ["issued_at"], schema=S, postgresql_where=sa.text("revoked_at IS NULL"))
    op.add_column("portal_session", sa.Column("host", sa.String(253), nullable=True), schema=S)
    op.add_column("portal_user", sa.Column("locale", sa.String(20), nullable=True), schema=S)


def downgrade() -> None:
    op.drop_column("portal_user", "locale", schema=S)
    op.drop_column("portal_session", "host", schema=S)
    op.drop_table("write_key", schema=S)
    op.drop_table("portal_brand", schema=S)
    op.drop_table("portal_host", schema=S)
