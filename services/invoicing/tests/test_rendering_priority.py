"""The rendering processes run below the service's CPU priority, so documents rendered ahead take
only the CPU that the consumers issuing invoices leave."""

from __future__ import annotations

import os

from invoicing.documents import rendering, service


def test_a_rendering_process_runs_niced_below_the_service() -> None:
    pool = service.render_pool(1)
    try:
        worker = pool.submit(os.nice, 0).result(timeout=120)  # os.nice(0): the caller's niceness, unchanged
    finally:
        service.shutdown_pool()
    assert worker == min(os.nice(0) + rendering.NICENESS, 19)
