"""portal: users, sign-in links, sessions; outbox, inbox, idempotency and audit

Revision ID: 0001
Revises:
Create Date: 2026-12-01 13:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from billing_runtime.conventions import add_http_tables, drop_http_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "portal"


def upgrade() -> None:
    op.create_table(
        "portal_user",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=True),
        sa.Column("invited_by", sa.String(), nullable=True),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_portal_user")),
        sa.UniqueConstraint("tenant", "email", name="uq_portal_user_tenant_email"),
        sa.CheckConstraint("role IN ('partner_admin', 'partner_finance', 'customer_admin', 'customer_viewer')", name="ck_portal_user_role"),
        sa.CheckConstraint("(role LIKE 'customer_%') = (account_id IS NOT NULL)", name="ck_portal_user_account"),
        schema=S,
    )
    op.create_table(
        "sign_in_link",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_sign_in_link")),
        schema=S,
    )
    op.create_index("ix_sign_in_link_user_id", "sign_in_link", ["user_id"], schema=S)
    op.create_table(
        "portal_session",
        sa.Column("session_sha256", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(17), nullable=False),
        sa.Column("statement_key_id", sa.String(17), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("session_sha256", name=op.f("pk_portal_session")),
        schema=S,
    )
    op.create_index("ix_portal_session_expires_at", "portal_session", ["expires_at"], schema=S, postgresql_where=sa.text("ended_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(), server_default="applied", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_inbox")),
        schema=S,
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        schema=S,
    )
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"], unique=False, schema=S)
    op.create_index("ix_outbox_unsent", "outbox", ["id"], unique=False, schema=S, postgresql_where=sa.text("sent_at IS NULL"))
    add_http_tables(op, S)


def downgrade() -> None:
    drop_http_tables(op, S)
    op.drop_table("outbox", schema=S)
    op.drop_table("inbox", schema=S)
    op.drop_table("portal_session", schema=S)
    op.drop_table("sign_in_link", schema=S)
    op.drop_table("portal_user", schema=S)
