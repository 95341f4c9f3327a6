"""Documents (BILLING-RULES §7): rendered once, then kept, so an issued invoice's PDF and XML never
change. An invoice is rendered ahead, in the background after it is issued (invoicing.documents.ahead),
and any document not yet stored on its first download. Rendering runs in a pool of worker processes
(`INVOICING_RENDER_WORKERS`): WeasyPrint is CPU-bound, and in a thread it held the GIL the event loop
needs to serve downloads. The processes start with the first document asked for (none before), one
more only when every one is busy, and all exit after `INVOICING_RENDER_IDLE_SECONDS` with nothing
to render: a service that renders nothing holds nothing but its own process. A document being rendered in this process is not rendered a second time:
a download waits for the rendering under way. Two processes may render the same document at once;
the first stored wins and both answer its bytes."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Literal, TypeVar

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from billing_runtime.errors import Conflict
from billing_runtime.service import ServiceRuntime
from invoicing.buyer import repository as buyer_repo
from invoicing.config import Settings
from invoicing.creditnote import repository as credit_repo
from invoicing.creditnote.service import existing_credit_note
from invoicing.documents import repository as repo
from invoicing.documents.consolidated import consolidated_sections, is_consolidated
from invoicing.documents.content import DocContent, credit_note_content, invoice_content, payment_for
from invoicing.documents.facturx import DocumentUnavailable
from invoicing.documents.rendering import render, warm
from invoicing.documents.ubl import ubl_xml
from invoicing.invoice import repository as invoice_repo
from invoicing.invoice.service import existing_invoice
from invoicing.seller import repository as seller_repo

tracer = trace.get_tracer(__name__)
DOCUMENTS_RENDERED = Counter("billing_documents_rendered_total", "Documents rendered (PDF with Factur-X XML)", ["kind"])
UBL_RENDERED = Counter("billing_documents_ubl_rendered_total", "UBL 2.1 (Peppol BIS 3.0) e-invoices written", ["kind"])
RENDER_WORKERS = Gauge("billing_render_workers", "Rendering processes alive now (none until a document is asked for, none after an idle while)")
RENDER_SECONDS = Histogram("billing_document_render_seconds", "Time to render one document (PDF and XML)", buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10))

OwnerKind = Literal["invoice", "credit_note"]
Format = Literal["pdf", "xml", "ubl"]
FILE_SUFFIX: dict[str, str] = {"pdf": "pdf", "xml": "xml", "ubl": "ubl.xml"}


class DocumentNotAvailable(Conflict):
    code = "document_unavailable"


_pool: ProcessPoolExecutor | None = None
_pool_shape: tuple[int, int] = (0, 0)
_in_flight = 0  # renderings submitted and not yet answered
_last_used = 0.0  # time.monotonic() of the last rendering answered (or submitted)
# Documents being rendered by this process, by (kind, owner id): a download joins the rendering.
_rendering: dict[tuple[str, str], asyncio.Future[dict[str, bytes]]] = {}
T = TypeVar("T")


def render_pool(workers: int, documents_per_process: int = 100) -> ProcessPoolExecutor:
    """The process's pool of rendering processes (spawned: a fork of a process running an event
    loop, Kafka clients and exporter threads is not safe), made on first use. The executor starts
    a process only when a rendering finds none idle, so one document at a time keeps one process.
    A process is replaced after `documents_per_process` documents: its memory grows with each
    (WeasyPrint's and Pango's caches) from about 96 MB, and 100 halves the growth the former 200
    allowed, for a restart (about 1 s of CPU) per 100 documents."""
    global _pool, _pool_shape
    if _pool is None or _pool_shape != (workers, documents_per_process):
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=warm, max_tasks_per_child=documents_per_process)
        _pool_shape = (workers, documents_per_process)
    return _pool


async def in_pool(settings: Settings, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in a rendering process (the pool made, or a process started, if none is idle);
    counted as in flight, so the pool is not stopped under it for idling."""
    global _in_flight, _last_used
    pool = render_pool(settings.render_workers, settings.render_documents_per_process)
    _in_flight += 1
    _last_used = time.monotonic()
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
    finally:
        _in_flight -= 1
        _last_used = time.monotonic()


def shutdown_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def stop_if_idle(idle_seconds: float) -> bool:
    """Stop the rendering processes when nothing was rendered for `idle_seconds` and nothing is
    being rendered; True when it stopped them. The next document starts a process again (about
    1 s of CPU before its first rendering)."""
    if _pool is None or _in_flight or time.monotonic() - _last_used < idle_seconds:
        return False
    shutdown_pool()
    return True


async def keep_pool(settings: Settings) -> None:
    """Runs for as long as the service does (`runtime.run_in_background`): stops the rendering
    processes after `render_idle_seconds` without a document; they all stop with the service."""
    idle = settings.render_idle_seconds
    try:
        while True:
            await asyncio.sleep(min(max(idle / 4, 0.05), 5.0))
            stop_if_idle(idle)
    finally:
        shutdown_pool()


def pool_pids() -> list[int]:
    """The rendering processes alive now (for memory figures and `billing_render_workers`)."""
    processes = getattr(_pool, "_processes", None) or {}
    return [pid for pid in list(processes) if os.path.exists(f"/proc/{pid}")]


RENDER_WORKERS.set_function(lambda: len(pool_pids()))


async def rendered(runtime: ServiceRuntime[Settings], seller_id: str, kind: OwnerKind, owner_id: str, content: DocContent) -> dict[str, bytes]:
    """Render and store both formats of a document, once per process at a time; returns the
    stored bytes (a rendering stored first by another process wins)."""
    key = (kind, owner_id)
    running = _rendering.get(key)
    if running is not None:
        return await asyncio.shield(running)
    future: asyncio.Future[dict[str, bytes]] = asyncio.get_running_loop().create_future()
    _rendering[key] = future
    try:
        with RENDER_SECONDS.time():
            try:
                made = await in_pool(runtime.settings, render, content)
            except DocumentUnavailable as exc:
                raise DocumentNotAvailable(str(exc)) from exc
        now = runtime.clock.now()
        async with runtime.transaction() as session:
            key_row = {"owner_kind": kind, "owner_id": owner_id, "seller_id": seller_id, "rendered_at": now}
            ours = await repo.store(session, [{**key_row, "format": f, "content": b} for f, b in made.items()])
        result = dict(made)
        if ours != set(made):  # another process stored its rendering first: answer its bytes
            async with runtime.sessions() as session:
                for f in set(made) - ours:
                    result[f] = await repo.get(session, seller_id, kind, owner_id, f) or made[f]
        DOCUMENTS_RENDERED.labels(kind).inc()
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: nobody else may be waiting
        raise
    finally:
        _rendering.pop(key, None)
    future.set_result(result)
    return result


async def _content(runtime: ServiceRuntime, seller_id: str, kind: OwnerKind, owner_id: str, buyer_account_id: str | None = None) -> DocContent:
    async with runtime.sessions() as session:
        seller = await seller_repo.get(session, seller_id)
        brand = seller.brand_color if seller is not None else None
        logo = seller.logo if seller is not None else None
        if kind == "invoice":
            row = await existing_invoice(session, seller_id, owner_id, buyer_account_id=buyer_account_id)
            # How the buyer pays, from the seller's profile (bank account) and what payments collects
            # the buyer from (CollectingMethodChanged: card or mandate; MandateChanged for buyers set up
            # before), as they stand when the document is first rendered (rendered ahead, just after
            # issue: the method that will be charged, not a payment made later); kept with it.
            mandate = await buyer_repo.get_mandate(session, seller_id, row.buyer_account_id)
            collecting = await buyer_repo.get_collecting_method(session, seller_id, row.buyer_account_id)
            payment = payment_for(seller, mandate, row.number, collecting)
            lines = await invoice_repo.get_lines(session, owner_id)
            content = invoice_content(row, lines, brand, payment=payment, logo=logo)
            if is_consolidated(row.tier, lines):
                content = dataclasses.replace(content, sections=consolidated_sections(lines))
            return content
        note = await existing_credit_note(session, seller_id, owner_id, buyer_account_id=buyer_account_id)
        invoice = await invoice_repo.get_invoice(session, seller_id, note.invoice_id)
        return credit_note_content(note, await credit_repo.get_lines(session, owner_id), invoice, brand, logo=logo)


async def _ubl(runtime: ServiceRuntime, seller_id: str, kind: OwnerKind, owner_id: str, content: DocContent) -> bytes:
    """The UBL rendering, in this process (lxml, a few milliseconds: no worker needed), stored like
    the others so that every download answers the same bytes."""
    try:
        made = ubl_xml(content)
    except DocumentUnavailable as exc:
        raise DocumentNotAvailable(str(exc)) from exc
    async with runtime.transaction() as session:
        row = {"owner_kind": kind, "owner_id": owner_id, "seller_id": seller_id, "rendered_at": runtime.clock.now(), "format": "ubl", "content": made}
        await repo.store(session, [row])
    async with runtime.sessions() as session:
        return await repo.get(session, seller_id, kind, owner_id, "ubl") or made


async def document(
    runtime: ServiceRuntime[Settings], seller_id: str, kind: OwnerKind, owner_id: str, fmt: Format, *, buyer_account_id: str | None = None
) -> tuple[str, bytes]:
    """(file name, bytes) of the seller's invoice or credit note in `fmt`, rendering it the first
    time; with `buyer_account_id` (a key restricted to one account), only that buyer's."""
    attributes = {"billing.document_kind": kind, "billing.document_format": fmt, "billing.owner_id": owner_id}
    with tracer.start_as_current_span("document", attributes=attributes) as span:
        async with runtime.sessions() as session:
            kept = await repo.stored(session, seller_id, kind, owner_id, fmt, buyer_account_id=buyer_account_id)
        if kept is not None:
            return f"{kept[0]}.{FILE_SUFFIX[fmt]}", kept[1]
        content = await _content(runtime, seller_id, kind, owner_id, buyer_account_id)
        name = f"{content.number}.{FILE_SUFFIX[fmt]}"
        span.set_attribute("billing.rendered", True)
        if fmt == "ubl":
            UBL_RENDERED.labels(kind).inc()
            return name, await _ubl(runtime, seller_id, kind, owner_id, content)
        return name, (await rendered(runtime, seller_id, kind, owner_id, content))[fmt]
