"""One transaction per write request: what the handler writes, its audit row and its stored
`Idempotency-Key` response commit together, or none of them does.

The conventions middleware opens the request's unit (a connection in a transaction) around an
authenticated write; while it is open, `ServiceRuntime.sessions()` / `.transaction()` called from
the request's own task bind to that connection, each session inside a SAVEPOINT (so a handler's
own rollback undoes only its part). The handler's "commit" releases its savepoint; the middleware
commits once the response is known to be a success, and rolls everything back otherwise (a 4xx,
a 500, an audit row that cannot be written). Other tasks (the consumer, the relay, a task the
handler spawns) never see the unit: they get sessions of their own.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass
class RequestUnit:
    connection: AsyncConnection
    task: asyncio.Task[object] | None
    # Set when a session committed outbox rows inside the unit: the relay is woken after the
    # unit commits (waking it earlier would find nothing to send).
    wrote_outbox: bool = False


_UNIT: ContextVar[RequestUnit | None] = ContextVar("billing_request_unit", default=None)


def current_unit() -> RequestUnit | None:
    """The unit of the running request, if this task is the request's own."""
    unit = _UNIT.get()
    if unit is None:
        return None
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop (a sync caller)
        return None
    return unit if task is unit.task else None


def enter(connection: AsyncConnection) -> tuple[RequestUnit, Token[RequestUnit | None]]:
    unit = RequestUnit(connection, asyncio.current_task())
    return unit, _UNIT.set(unit)


def leave(token: Token[RequestUnit | None]) -> None:
    _UNIT.reset(token)
