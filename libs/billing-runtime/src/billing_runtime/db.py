"""Engine and sessions. Each service owns one schema; its tables live in its own MetaData."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import registry

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


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(async_url(url), pool_size=pool_size, max_overflow=10, pool_pre_ping=True, hide_parameters=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
