"""Shared documents: capability links to one document each, fetched without an API key.

An invoice email attaches its PDF and links it; the buyer's browser and notify fetch it from
`/v1/shared/{token}`, where the token (256 random bits) is the credential, as Stripe's hosted
invoice links work. A link is made in the transaction that issues its document and is published in
the document's event (`DocumentLink.shared_url`); it names one document of one seller and nothing
else. Absolute when `INVOICING_PUBLIC_BASE_URL` is set, relative to invoicing otherwise. The
seller can rotate an invoice's links: the old ones stop working at once.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy import Table, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.conventions import SHARED_PATH_PREFIX
from billing_runtime.errors import NotFound
from billing_runtime.service import ServiceRuntime
from billing_runtime.tenancy import scoped, scoped_pairs, select_scoped, tenant_owned
from invoicing.config import Settings
from invoicing.documents.models import DocumentShare

tracer = trace.get_tracer(__name__)
SHARE: Table = tenant_owned(DocumentShare, "seller_id")
SHARED_LINKS = Counter("billing_shared_links_total", "Shared document links made or rotated", ["kind", "action"])
SHARED_DOWNLOADS = Counter("billing_shared_document_downloads_total", "Documents fetched by their shared link", ["kind", "format", "outcome"])

SharedKind = Literal["invoice", "credit_note", "comparison_report", "project_work_statement"]


class ShareNotFound(NotFound):
    code = "shared_document_not_found"


async def share(session: AsyncSession, seller_id: str, kind: SharedKind, owner_id: str, fmt: str, now: datetime) -> str:
    """The token of the document's link, made now unless it exists (one link per document)."""
    made: str | None = (
        await session.execute(
            pg_insert(SHARE)
            .values(token=secrets.token_urlsafe(32), seller_id=seller_id, owner_kind=kind, owner_id=owner_id, format=fmt, created_at=now)
            .on_conflict_do_nothing(index_elements=["owner_kind", "owner_id", "format"])
            .returning(SHARE.c.token)
        )
    ).scalar_one_or_none()
    if made is not None:
        SHARED_LINKS.labels(kind, "created").inc()
        return made
    token: str = (
        await session.execute(
            select_scoped(SHARE, seller_id, SHARE.c.token).where(SHARE.c.owner_kind == kind, SHARE.c.owner_id == owner_id, SHARE.c.format == fmt)
        )
    ).scalar_one()
    return token


async def share_many(
    session: AsyncSession, kind: SharedKind, owners: list[tuple[str, str]], formats: tuple[str, ...], now: datetime
) -> dict[tuple[str, str], str]:
    """`share` for many documents in one statement: every (seller id, owner id) of `owners` gets a
    link per format, made now unless it exists. Returns the tokens by (owner id, format)."""
    if not owners:
        return {}
    documents = [(seller_id, owner_id, fmt) for seller_id, owner_id in owners for fmt in formats]
    made = await session.execute(
        text(
            f"INSERT INTO {SHARE.fullname} (token, seller_id, owner_kind, owner_id, format, created_at)"
            " SELECT t, s, CAST(:kind AS text), o, f, CAST(:now AS timestamptz)"
            " FROM unnest(CAST(:tokens AS text[]), CAST(:sellers AS text[]), CAST(:owners AS text[]), CAST(:formats AS text[])) AS d(t, s, o, f)"
            " ON CONFLICT (owner_kind, owner_id, format) DO NOTHING RETURNING owner_id, format, token"
        ),
        {
            "kind": kind,
            "now": now,
            "tokens": [secrets.token_urlsafe(32) for _ in documents],
            "sellers": [d[0] for d in documents],
            "owners": [d[1] for d in documents],
            "formats": [d[2] for d in documents],
        },
    )
    tokens = {(owner_id, fmt): token for owner_id, fmt, token in made.all()}
    if tokens:
        SHARED_LINKS.labels(kind, "created").inc(len(tokens))
    missing = [(owner_id, fmt) for _, owner_id, fmt in documents if (owner_id, fmt) not in tokens]
    if missing:  # links that existed already (rare: a retried batch finds none, its transaction rolled back)
        wanted = {owner_id for owner_id, _ in missing}
        rows = await session.execute(
            scoped_pairs(
                select(SHARE.c.owner_id, SHARE.c.format, SHARE.c.token).where(SHARE.c.owner_kind == kind),
                SHARE,
                SHARE.c.owner_id,
                sorted({(seller_id, owner_id) for seller_id, owner_id in owners if owner_id in wanted}),
            )
        )
        tokens.update({(owner_id, fmt): token for owner_id, fmt, token in rows.all()})
    return tokens


async def rotate(session: AsyncSession, seller_id: str, kind: SharedKind, owner_id: str, formats: tuple[str, ...], now: datetime) -> dict[str, str]:
    """New tokens for the document's links (made if missing): the old links stop working when the
    transaction commits. Returns the tokens by format."""
    with tracer.start_as_current_span("shared_links.rotate", attributes={"billing.document_kind": kind, "billing.owner_id": owner_id}):
        await session.execute(
            scoped(SHARE.delete(), SHARE, seller_id).where(SHARE.c.owner_kind == kind, SHARE.c.owner_id == owner_id, SHARE.c.format.in_(formats))
        )
        tokens = {fmt: await share(session, seller_id, kind, owner_id, fmt, now) for fmt in formats}
    SHARED_LINKS.labels(kind, "rotated").inc()
    return tokens


async def tokens_of(session: AsyncSession, seller_id: str, kind: SharedKind, owner_id: str) -> dict[str, str]:
    """The document's shared links by format."""
    rows = await session.execute(select_scoped(SHARE, seller_id, SHARE.c.format, SHARE.c.token).where(SHARE.c.owner_kind == kind, SHARE.c.owner_id == owner_id))
    return {fmt: token for fmt, token in rows.all()}


def shared_url(runtime: ServiceRuntime[Settings], token: str) -> str:
    base = runtime.settings.public_base_url
    path = f"{SHARED_PATH_PREFIX}{token}"
    return f"{base.rstrip('/')}{path}" if base else path


async def resolve(runtime: ServiceRuntime, token: str) -> DocumentShare:
    """The share a token names; 404 for any other string (the answer is the same for a malformed,
    unknown or guessed token)."""
    with tracer.start_as_current_span("shared_document.resolve"):
        async with runtime.sessions() as session:
            # Unscoped on purpose: the caller has no key and no tenant; the token is the credential,
            # and the share it finds names its seller (every read after this one is scoped to it).
            row = (await session.execute(select(SHARE).where(SHARE.c.token == token))).one_or_none()
    if row is None:
        SHARED_DOWNLOADS.labels("unknown", "unknown", "not_found").inc()
        raise ShareNotFound("no shared document at this link")
    return DocumentShare(**row._mapping)
