"""Pausing Python's cyclic garbage collector over a bounded batch of work."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator

from prometheus_client import Counter


@contextlib.contextmanager
def collector_paused(paused_seconds: Counter | None = None) -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, awaits included, and count the pause in
    `paused_seconds` when given (a synchronous stretch inside a counted block needs no count of its
    own). For a bounded batch that builds many short-lived objects their reference counts free (a
    close's slices, an issuing batch): collections meanwhile would walk them again and again. What
    else runs in the process keeps its cyclic garbage until the block ends. The collector resumes
    after it, also when it fails; a block inside another leaves it to the outer."""
    enabled = gc.isenabled()
    started = time.perf_counter()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            if paused_seconds is not None:
                paused_seconds.inc(time.perf_counter() - started)
