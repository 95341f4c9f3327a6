"""Rendering ahead: each issued invoice's PDF and XML are rendered in the background after the
invoice commits, so the invoice email's attachment (its first download) is served stored and a
month close's emails are not held up by rendering. The bill run itself never waits for it: it
commits its invoices, and this loop finds them afterwards.

It looks for invoices issued since a floor held in memory that have no stored PDF, oldest first
(one indexed range read, `ix_invoice_issued_at`), takes up to `INVOICING_RENDER_AHEAD_BATCH` of them,
renders `INVOICING_RENDER_AHEAD_WORKERS` (1) at a time in the rendering processes
(invoicing.documents.service: one process kept busy, so a month close holds one rendering process
and not one per core; a download finding it busy starts another), and stores them; a download of one
being rendered waits for it instead of rendering it again. The floor starts an hour back when the
service starts and moves up to the oldest invoice still to render, or to a minute ago (an invoice
whose transaction is still open may carry an earlier `issued_at` than one already committed, so
the floor stays a minute behind). An invoice older than the floor with no document is rendered on
its first download, as before. An invoice that cannot be rendered (EN 16931 needs a country) is
left to its download, which answers 409 `document_unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy import Table, and_, exists, not_, select

from billing_runtime.service import ServiceRuntime
from invoicing.config import Settings
from invoicing.documents import service
from invoicing.documents.models import RenderedDocument
from invoicing.invoice.models import Invoice

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

INVOICE: Table = Invoice.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
DOCUMENT: Table = RenderedDocument.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not declared by it
RENDERED_AHEAD = Counter("billing_documents_rendered_ahead_total", "Invoices whose documents the background renderer looked at, by outcome", ["outcome"])

START_LOOKBACK = timedelta(hours=1)
OPEN_TRANSACTION_MARGIN = timedelta(minutes=1)


async def unrendered(runtime: ServiceRuntime[Settings], floor: datetime, skipped: set[str], limit: int) -> list[tuple[str, str, datetime]]:
    """(invoice id, seller id, issued at) of invoices issued at or after `floor` with no stored
    PDF, oldest first, leaving out `skipped`.

    Spans tenants on purpose: the background renderer serves every seller; each row carries its
    seller id, and rendering it reads the invoice scoped to that seller (service._content)."""
    has_pdf = exists().where(and_(DOCUMENT.c.owner_kind == "invoice", DOCUMENT.c.owner_id == INVOICE.c.invoice_id, DOCUMENT.c.format == "pdf"))
    query = select(INVOICE.c.invoice_id, INVOICE.c.seller_id, INVOICE.c.issued_at).where(INVOICE.c.issued_at >= floor, not_(has_pdf))
    if skipped:
        query = query.where(INVOICE.c.invoice_id.not_in(skipped))
    query = query.order_by(INVOICE.c.issued_at, INVOICE.c.invoice_id).limit(limit)
    async with runtime.sessions() as session:
        return [(r.invoice_id, r.seller_id, r.issued_at) for r in await session.execute(query)]


async def render_one(runtime: ServiceRuntime[Settings], invoice_id: str, seller_id: str) -> bool:
    """Render and store one invoice's documents; False when it cannot be rendered."""
    try:
        content = await service._content(runtime, seller_id, "invoice", invoice_id)
        await service.rendered(runtime, seller_id, "invoice", invoice_id, content)
    except service.DocumentNotAvailable:
        RENDERED_AHEAD.labels("unavailable").inc()
        return False
    RENDERED_AHEAD.labels("rendered").inc()
    return True


class RenderAhead:
    """Run by `runtime.every` (each `INVOICING_RENDER_AHEAD_POLL_MS`; at once again after a full
    batch); a failed look (the database away) is logged and counted there, and tried again."""

    def __init__(self, runtime: ServiceRuntime[Settings], *, batch: int, workers: int = 1) -> None:
        self.runtime = runtime
        self.batch = batch
        self.gate = asyncio.Semaphore(max(1, min(workers, runtime.settings.render_workers)))
        self.floor: datetime | None = None
        self.skipped: dict[str, datetime] = {}

    async def _render(self, invoice_id: str, seller_id: str) -> bool:
        async with self.gate:
            return await render_one(self.runtime, invoice_id, seller_id)

    async def once(self) -> bool:
        """One look: render what was found (at most `batch`, at once); True when it found a full
        batch (there may be more)."""
        now = self.runtime.clock.now()
        if self.floor is None:
            self.floor = now - START_LOOKBACK
        todo = await unrendered(self.runtime, self.floor, set(self.skipped), self.batch)
        with tracer.start_as_current_span("render_ahead", attributes={"billing.documents": len(todo)}):
            results = await asyncio.gather(*(self._render(i, s) for i, s, _ in todo), return_exceptions=True)
        for (invoice_id, _, issued_at), result in zip(todo, results, strict=True):
            if result is not True:
                if isinstance(result, BaseException):
                    log.warning("invoice %s: rendering ahead failed (%s); it renders on its first download", invoice_id, result)
                    RENDERED_AHEAD.labels("error").inc()
                self.skipped[invoice_id] = issued_at
        # Everything issued before the first found is rendered (or skipped): the floor moves up to
        # it when there may be more, else to now; never past a minute ago.
        candidate = now - OPEN_TRANSACTION_MARGIN
        if len(todo) >= self.batch:
            candidate = min(candidate, todo[0][2])
        if candidate > self.floor:
            self.floor = candidate
            self.skipped = {i: at for i, at in self.skipped.items() if at >= candidate}
        return len(todo) >= self.batch
