"""The background tasks of a service: kept running through failures, and cancelled for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


async def keep_running(run: Callable[[], Any], what: str) -> None:
    """Await `run()` until it returns; a failure is logged and `run` called again a second later
    (the database or the broker may be away for a while, and the work must outlive that)."""
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped; restarting in 1 s", what)
            await asyncio.sleep(1.0)


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end. Cancelling again until it does: on Python 3.11 a
    cancellation that races with a finishing `asyncio.wait_for` (aiosmtplib, aiokafka and asyncpg
    all use it) can be swallowed, and a loop that swallowed it would run on and hang shutdown."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
