"""Who may sign in, how, and with which credential (BILLING-RULES: the portal sees what its user may).

- A **user** is invited by a partner admin (portal form or `POST /v1/portal/invitations`) with a role:
  `partner_admin`, `partner_finance` (the partner's staff: its whole tenant) or `customer_admin`,
  `customer_viewer` (an end customer's contact: one billing account).
- A **sign-in link** is a random token emailed through notify (`PortalSignInLinkIssued`); only its
  SHA-256 is kept. It works once (`used_at` is set by the one statement that accepts it) and until
  `expires_at`.
- A **session** is another random token, the cookie; only its SHA-256 is kept. Signing in mints the
  session's API keys in the key registry (`billing_auth.api_key`), announced through the portal's
  outbox: for a customer one key of the partner's tenant **restricted to the user's account**
  (`write` for a customer admin, who keeps its payment methods and billing profile; `read` for a
  viewer); for a partner's staff one tenant-wide `read` key and one `read` key of the distributor
  restricted to the partner's own account there (its statement). The keys' secrets are derived
  from the session token and the portal's secret key, so the database holds nothing that calls a
  service. Signing out, or the session expiring, revokes them.

The restriction is decided here, once, from the user's row, and enforced by the services: no page
of the portal can widen what a customer's session reaches.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy import ColumnElement, and_, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import PortalSignInLinkIssued, account_id
from billing_runtime.auth import IssuedKey, Scope, generate_key, register, revocation, revoke_in_registry
from billing_runtime.errors import BillingError
from billing_runtime.service import ServiceRuntime
from portal import db
from portal.i18n import SUPPORTED

tracer = trace.get_tracer(__name__)

SIGN_INS = Counter("portal_sign_ins_total", "Sign-in attempts by outcome", ["outcome"])
INVITATIONS = Counter("portal_invitations_total", "Users invited")
SESSIONS_ENDED = Counter("portal_sessions_ended_total", "Sessions ended and their keys revoked", ["why"])

PARTNER_ROLES = ("partner_admin", "partner_finance")
CUSTOMER_ROLES = ("customer_admin", "customer_viewer")


class InvalidInvitation(BillingError):
    status_code = 422
    code = "invalid_invitation"


class LinkRefused(BillingError):
    status_code = 410
    code = "sign_in_link_refused"


@dataclass(frozen=True)
class User:
    user_id: str
    tenant: str
    email: str
    name: str | None
    role: str
    account_id: str | None
    locale: str | None = None

    @property
    def is_partner(self) -> bool:
        return self.role in PARTNER_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "partner_admin"

    @property
    def may_change_account(self) -> bool:
        """A customer admin changes its own payment methods and billing profile; a viewer looks."""
        return self.role == "customer_admin"


@dataclass(frozen=True)
class Session:
    """A signed-in user and the API keys of the session (whole keys, rebuilt from the cookie)."""

    user: User
    token: str
    key: str
    statement_key: str | None
    csrf: str
    expires_at: datetime


def _user(row: Any) -> User:
    return User(row.user_id, row.tenant, row.email, row.name, row.role, row.account_id, row.locale)


class Secrets:
    """Everything derived from the portal's secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def derive(self, purpose: str, token: str) -> str:
        return hmac.new(self._key, f"{purpose}:{token}".encode(), hashlib.sha256).hexdigest()

    def key_secret(self, session_token: str, which: str) -> str:
        return self.derive(f"api-key:{which}", session_token)

    def csrf(self, cookie_token: str) -> str:
        return self.derive("csrf", cookie_token)[:40]

    def csrf_ok(self, cookie_token: str | None, presented: str | None) -> bool:
        return bool(cookie_token and presented) and hmac.compare_digest(self.csrf(cookie_token or ""), presented or "")


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def invite(
    runtime: ServiceRuntime,
    session: AsyncSession,
    *,
    tenant: str,
    email: str,
    name: str | None,
    role: str,
    customer_id: str | None,
    invited_by: str | None,
    portal_url: str,
    link_minutes: int,
    locale: str | None = None,
) -> tuple[User, str]:
    """Create (or find) the user and email it a first sign-in link; (user, link URL). Inviting the
    same address again sends a new link and changes nothing else (the first role stands)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise InvalidInvitation("an email address is needed", field="email")
    if role not in db.ROLES:
        raise InvalidInvitation(f"role must be one of {', '.join(db.ROLES)}", field="role")
    customer_id = (customer_id or "").strip() or None
    if role in CUSTOMER_ROLES and customer_id is None:
        raise InvalidInvitation("a customer's contact needs the customer's id", field="customer_id")
    if role in PARTNER_ROLES and customer_id is not None:
        raise InvalidInvitation("a partner's staff sees the whole tenant: give no customer id", field="customer_id")
    if locale is not None and locale not in SUPPORTED:
        raise InvalidInvitation(f"locale must be one of {', '.join(SUPPORTED)}", field="locale")
    account = account_id(tenant, customer_id) if customer_id else None
    now = runtime.clock.now()
    values = {
        "user_id": str(uuid.uuid4()),
        "tenant": tenant,
        "email": email,
        "name": (name or "").strip() or None,
        "role": role,
        "account_id": account,
        "invited_by": invited_by,
        "invited_at": now,
        "locale": locale,
    }
    await session.execute(pg_insert(db.user).values(**values).on_conflict_do_nothing(constraint="uq_portal_user_tenant_email"))
    row = (await session.execute(select(db.user).where(db.user.c.tenant == tenant, db.user.c.email == email))).one()
    user = _user(row)
    link = await send_link(runtime, session, user, portal_url=portal_url, link_minutes=link_minutes, invitation=True, invited_by=invited_by)
    INVITATIONS.inc()
    return user, link


async def send_link(
    runtime: ServiceRuntime,
    session: AsyncSession,
    user: User,
    *,
    portal_url: str,
    link_minutes: int,
    invitation: bool = False,
    invited_by: str | None = None,
) -> str:
    """A new one-time link for `user`, emailed by notify; the URL (for the caller's log, never shown to a browser).
    `portal_url` is the root of the tenant's portal (`hosts.portal_url`: its own host, or `/p/<tenant>`)."""
    token = secrets.token_urlsafe(32)
    now = runtime.clock.now()
    expires = now + timedelta(minutes=link_minutes)
    await session.execute(
        insert(db.sign_in_link).values(token_sha256=sha256(token), user_id=user.user_id, tenant=user.tenant, created_at=now, expires_at=expires)
    )
    url = f"{portal_url.rstrip('/')}/sign-in/{token}"
    data = PortalSignInLinkIssued(
        user_id=user.user_id,
        email=user.email,
        name=user.name,
        role=user.role,
        account_id=user.account_id,
        link=url,
        expires_at=expires,
        invitation=invitation,
        invited_by=invited_by,
    )
    await runtime.outbox.add(session, runtime.event(data, tenant=user.tenant, subject=user.user_id))
    return url


async def user_by_email(session: AsyncSession, tenant: str, email: str) -> User | None:
    row = (
        await session.execute(select(db.user).where(db.user.c.tenant == tenant, db.user.c.email == email.strip().lower(), db.user.c.disabled_at.is_(None)))
    ).first()
    return None if row is None else _user(row)


async def users_of(session: AsyncSession, tenant: str) -> list[Any]:
    return list((await session.execute(select(db.user).where(db.user.c.tenant == tenant).order_by(db.user.c.invited_at))).all())


def _good_link(tenant: str, token: str, now: datetime) -> ColumnElement[bool]:
    """The link `token` of this partner's portal, not used and not expired."""
    link = db.sign_in_link.c
    return and_(link.token_sha256 == sha256(token), link.tenant == tenant, link.used_at.is_(None), link.expires_at > now)


async def link_user(session: AsyncSession, tenant: str, token: str, now: datetime) -> User | None:
    """The user a link is for, if it is still good (to show the sign-in page); nothing is consumed."""
    query = (
        select(db.user)
        .join(db.sign_in_link, db.sign_in_link.c.user_id == db.user.c.user_id)
        .where(_good_link(tenant, token, now), db.user.c.disabled_at.is_(None))
    )
    row = (await session.execute(query)).first()
    return None if row is None else _user(row)


async def register_key(runtime: ServiceRuntime, session: AsyncSession, key: IssuedKey, label: str, now: datetime) -> None:
    """A key the portal minted: in the key registry, and announced through the outbox (ApiKeyIssued)."""
    await register(await session.connection(), key, label=label, now=now)
    await runtime.outbox.add(session, key.event(label=label, now=now, source="/portal"))


async def revoke_key(runtime: ServiceRuntime, session: AsyncSession, key_id: str, reason: str, now: datetime) -> None:
    """A key the portal minted, revoked in the registry and, if the registry knew it, announced (ApiKeyRevoked)."""
    known = await revoke_in_registry(await session.connection(), key_id, reason=reason, now=now)
    if known is not None:
        await runtime.outbox.add(session, revocation(key_id, known.tenant, reason=reason, now=now, source="/portal"))


def _keys_for(user: User, token: str, secrets_: Secrets, distributor: str) -> list[tuple[str, IssuedKey]]:
    """The session's keys: what the user's role and account allow, decided here and nowhere else."""
    scope: Scope = "read"
    if user.is_partner:
        return [
            ("tenant", generate_key(user.tenant, scope, secret=secrets_.key_secret(token, "tenant"))),
            (
                "statement",
                generate_key(distributor, scope, account_id=account_id(distributor, user.tenant), secret=secrets_.key_secret(token, "statement")),
            ),
        ]
    if user.account_id is None:  # the table's check constraint makes this impossible; refuse rather than widen
        raise LinkRefused("this user has no account")
    # A customer admin keeps its payment methods and billing profile: `write`, still restricted to
    # its account (only routes declaring ForAccount take the key, and they scope to the account).
    customer_scope: Scope = "write" if user.role == "customer_admin" else scope
    return [("tenant", generate_key(user.tenant, customer_scope, account_id=user.account_id, secret=secrets_.key_secret(token, "tenant")))]


async def sign_in(
    runtime: ServiceRuntime,
    session: AsyncSession,
    tenant: str,
    link_token: str,
    secrets_: Secrets,
    *,
    distributor: str,
    session_hours: int,
    host: str | None = None,
) -> Session:
    """Use a link (once: the UPDATE that marks it used is the one check that counts) and open a
    session with its keys, in one transaction; LinkRefused for an unknown, used or expired link."""
    now = runtime.clock.now()
    with tracer.start_as_current_span("portal.sign_in"):
        used = await session.execute(
            update(db.sign_in_link).where(_good_link(tenant, link_token, now)).values(used_at=now).returning(db.sign_in_link.c.user_id)
        )
        user_id = used.scalar()
        row = None if user_id is None else (await session.execute(select(db.user).where(db.user.c.user_id == user_id, db.user.c.disabled_at.is_(None)))).first()
        if row is None:
            SIGN_INS.labels("refused").inc()
            raise LinkRefused("this sign-in link has expired or was already used")
        user = _user(row)
        token = secrets.token_urlsafe(32)
        keys = dict(_keys_for(user, token, secrets_, distributor))
        for which, key in keys.items():
            await register_key(runtime, session, key, f"portal session of {user.email} ({which})", now)
        expires = now + timedelta(hours=session_hours)
        statement = keys.get("statement")
        await session.execute(
            insert(db.session).values(
                session_sha256=sha256(token),
                user_id=user.user_id,
                tenant=user.tenant,
                key_id=keys["tenant"].key_id,
                statement_key_id=statement.key_id if statement else None,
                created_at=now,
                expires_at=expires,
                host=host,
            )
        )
        SIGN_INS.labels("signed_in").inc()
        return Session(user, token, keys["tenant"].key, statement.key if statement else None, secrets_.csrf(token), expires)


async def current(session: AsyncSession, tenant: str, token: str | None, secrets_: Secrets, now: datetime, host: str | None = None) -> Session | None:
    """The session a cookie stands for, on this partner's portal at this host (None: the portal's own
    address); None when it is unknown, ended, expired or opened at another host."""
    if not token:
        return None
    query = (
        select(db.session, db.user)
        .join(db.user, db.user.c.user_id == db.session.c.user_id)
        .where(
            db.session.c.session_sha256 == sha256(token),
            db.session.c.tenant == tenant,
            db.session.c.ended_at.is_(None),
            db.session.c.expires_at > now,
            db.user.c.disabled_at.is_(None),
            db.session.c.host.is_not_distinct_from(host),
        )
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    user = _user(row)
    key = f"bk_live_{row.key_id}_{secrets_.key_secret(token, 'tenant')}"
    statement = f"bk_live_{row.statement_key_id}_{secrets_.key_secret(token, 'statement')}" if row.statement_key_id else None
    return Session(user, token, key, statement, secrets_.csrf(token), row.expires_at)


async def end_sessions(runtime: ServiceRuntime, session: AsyncSession, *, token: str | None = None, why: str) -> int:
    """End one session (by its token) or every expired one, revoking their keys; how many ended."""
    now = runtime.clock.now()
    table = db.session
    condition = table.c.session_sha256 == sha256(token) if token else and_(table.c.expires_at <= now)
    ended = await session.execute(
        update(table).where(condition, table.c.ended_at.is_(None)).values(ended_at=now).returning(table.c.tenant, table.c.key_id, table.c.statement_key_id)
    )
    rows = ended.all()
    for row in rows:
        for key_id in (row.key_id, row.statement_key_id):
            if key_id is not None:
                await revoke_key(runtime, session, key_id, f"portal session {why}", now)
    if rows:
        SESSIONS_ENDED.labels(why).inc(len(rows))
    return len(rows)
