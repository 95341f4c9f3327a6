"""Engine and sessions. Each service owns one schema; its tables live in its own MetaData."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, registry

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def schema_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def schema_registry(schema: str) -> registry:
    """An ORM registry bound to a service's schema, for `class Base(SQLModel, registry=...)`."""
    return registry(metadata=schema_metadata(schema))


def async_url(url: str) -> str:
    """Accept a plain postgresql:// URL (as everyone writes it) and pick the asyncpg driver.

    A `host=/socket/dir` query parameter (the embedded server listens on a Unix socket) is kept.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+asyncpg"
    query = urlencode(parse_qsl(parts.query))
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


# A pooled connection idle longer than this is pinged before it is handed out (a firewall or a
# restarted server may have dropped it); one in steady use is not: no round trip per checkout.
PING_AFTER_IDLE_SECONDS = 30.0
# Connections are replaced after this long, whatever their use.
POOL_RECYCLE_SECONDS = 1800


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=10, pool_recycle=POOL_RECYCLE_SECONDS, hide_parameters=True)
    _ping_when_stale(engine)
    return engine


def _ping_when_stale(engine: AsyncEngine) -> None:
    """Instead of `pool_pre_ping` (a round trip on every checkout): ping only a connection that sat
    idle in the pool for a while; a dead one is discarded and the pool hands out another (it retries
    the checkout). A connection dropped while in use fails that statement: the consumer retries
    its batch (a transient failure), and the pool replaces every connection older than the drop."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["billing_idle_since"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("billing_idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection idle for {time.monotonic() - idle_since:.0f} s is gone: {exc}") from exc


def session_factory(engine: AsyncEngine, *, sync_session_class: type[Session] = Session) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=sync_session_class)
