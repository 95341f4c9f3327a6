"""What `billing` says when something it needs is not there: one or two lines with what was tried
and what to do next, never a traceback (unless `--debug`), and an exit code a script can test.

| exit code | meaning |
|---|---|
| 0 | done |
| 1 | the command ran and found a problem (the demo's checks, a bill run that did not finish, a database without the platform's tables) |
| 2 | the command line is wrong (an unknown option, a missing setting) |
| 3 | something the command needs cannot be reached: the Kafka broker, PostgreSQL, a service |
| 4 | `billing up` / `billing demo` refused to start (a port taken) or a process it started died |
| 70 | a bug: an unexpected error (run again with `--debug` for the traceback) |
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

OK, PROBLEM, USAGE, UNREACHABLE, STARTUP, BUG = 0, 1, 2, 3, 4, 70


@dataclass
class Targets:
    """What the running command tries to reach, so an error can say where it looked."""

    kafka: str | None = None
    database: str | None = None
    http: list[str] = field(default_factory=list)


TARGETS = Targets()


class NotMigrated(Exception):
    """The database answers but lacks the platform's tables."""


def safe_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only the part after the credentials
        return url.rsplit("@", 1)[-1]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                yield from _chain(inner)
        current = current.__cause__ or current.__context__


def _is_kafka_unreachable(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

    return isinstance(exc, KafkaConnectionError | NodeNotReadyError | KafkaTimeoutError)


def _is_database_unreachable(exc: BaseException) -> bool:
    import asyncpg

    if isinstance(exc, asyncpg.exceptions.CannotConnectNowError | asyncpg.exceptions.InvalidCatalogNameError):
        return True
    if isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError | asyncpg.exceptions.InvalidPasswordError):
        return True
    return isinstance(exc, ConnectionError | socket.gaierror | TimeoutError) or (isinstance(exc, OSError) and exc.errno is not None)


def explain(exc: BaseException, command: str) -> tuple[int, str]:
    """The exit code and the message for an exception that ended `command`."""
    import httpx

    chain = list(_chain(exc))
    if any(_is_kafka_unreachable(e) for e in chain):
        where = TARGETS.kafka or "?"
        return UNREACHABLE, (
            f"billing {command}: cannot reach the Kafka broker at {where}.\n"
            "Is the platform up (`billing up`)? Otherwise point KAFKA_BOOTSTRAP_SERVERS (or --bootstrap) at your broker."
        )
    http_error = next((e for e in chain if isinstance(e, httpx.TransportError)), None)
    if http_error is not None:
        request = getattr(http_error, "_request", None)
        where = str(request.url.copy_with(query=None)) if request is not None else ", ".join(TARGETS.http) or "?"
        return UNREACHABLE, (
            f"billing {command}: no answer from {where} ({type(http_error).__name__}).\n"
            "Is the platform up (`billing up`)? Otherwise set the service's URL (see `billing " + command + " --help`)."
        )
    if TARGETS.database is not None and any(_is_database_unreachable(e) for e in chain):
        reason = next((str(e) for e in chain if str(e)), type(exc).__name__).splitlines()[0][:160]
        return UNREACHABLE, (
            f"billing {command}: cannot reach PostgreSQL at {safe_url(TARGETS.database)} ({reason}).\n"
            "Is the database up? Otherwise set DATABASE_URL (or --database-url) to the platform's database."
        )
    missing = next((e for e in chain if isinstance(e, NotMigrated) or type(e).__name__ == "UndefinedTableError"), None)
    if TARGETS.database is not None and missing is not None:
        return PROBLEM, (
            f"billing {command}: the database at {safe_url(TARGETS.database)} lacks the platform's tables ({str(missing).splitlines()[0][:120]}).\n"
            "Run `billing migrate` against it, or set DATABASE_URL (or --database-url) to the platform's database."
        )
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return BUG, f"billing {command}: unexpected {type(exc).__name__}: {first}\nRun again with --debug for the traceback, and report it."
