"""The portal's schema: its users, their sign-in links and sessions (and the runtime's tables)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, DateTime, Index, String, Table, UniqueConstraint

from billing_runtime.service import service_schema

SCHEMA = "portal"
registry, metadata, outbox, inbox, idempotency, audit = service_schema(SCHEMA)

ROLES = ("partner_admin", "partner_finance", "customer_admin", "customer_viewer")

user = Table(
    "portal_user",
    metadata,
    Column("user_id", String, primary_key=True),
    Column("tenant", String, nullable=False),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=True),
    Column("role", String(20), nullable=False),
    # The one billing account a customer's contact sees; NULL for a partner's staff.
    Column("account_id", String(200), nullable=True),
    Column("invited_by", String, nullable=True),
    Column("invited_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    # The user's language for the pages (`de`, `en_GB`); NULL: the browser's Accept-Language.
    Column("locale", String(20), nullable=True),
    UniqueConstraint("tenant", "email", name="uq_portal_user_tenant_email"),
    CheckConstraint("role IN ('partner_admin', 'partner_finance', 'customer_admin', 'customer_viewer')", name="ck_portal_user_role"),
    CheckConstraint("(role LIKE 'customer_%') = (account_id IS NOT NULL)", name="ck_portal_user_account"),
)

# Only the SHA-256 of a link's token is kept: the token itself is in the email alone.
sign_in_link = Table(
    "sign_in_link",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", String, nullable=False),
    Column("tenant", String, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Index("ix_sign_in_link_user_id", "user_id"),
)

# Only the SHA-256 of the session token (the cookie) is kept; the sessions' API keys are named by id,
# their secrets derived from the token and the portal's secret key, so nothing here lets anyone call a service.
session = Table(
    "portal_session",
    metadata,
    Column("session_sha256", String(64), primary_key=True),
    Column("user_id", String, nullable=False),
    Column("tenant", String, nullable=False),
    Column("key_id", String(17), nullable=False),
    Column("statement_key_id", String(17), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    # The host name the session was opened at (a partner's own host), NULL on the portal's own
    # address: a session is accepted only where it was opened.
    Column("host", String(253), nullable=True),
    Index("ix_portal_session_expires_at", "expires_at", postgresql_where="ended_at IS NULL"),
)

# A partner's portal at its own host name (`billing.acme.example`): one host per tenant.
host = Table(
    "portal_host",
    metadata,
    Column("host", String(253), primary_key=True),
    Column("tenant", String, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant", name="uq_portal_host_tenant"),
    CheckConstraint("host = lower(host)", name="ck_portal_host_lower"),
)

# The partner's brand as notify last showed it to the portal, so that the pages before sign-in
# (a partner's own host, the sign-in form) wear it too; notify stays its owner.
brand = Table(
    "portal_brand",
    metadata,
    Column("tenant", String, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("color", String(7), nullable=False),
    Column("logo_url", String(2000), nullable=True),
    Column("footer", String(2000), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The write keys the portal minted for one call each (a partner admin saving the brand): revoked
# by the request that made them, or by the session sweeper if that request died before it could.
write_key = Table(
    "write_key",
    metadata,
    Column("key_id", String(17), primary_key=True),
    Column("tenant", String, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_write_key_unrevoked", "issued_at", postgresql_where="revoked_at IS NULL"),
)
