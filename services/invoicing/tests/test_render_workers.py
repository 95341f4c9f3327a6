"""The rendering processes are real processes that exist only while documents are rendered: none
when the service starts, one after the first document, none again after an idle while. Counted
from the operating system (psutil: this process's children), and by `billing_render_workers`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psutil
import pytest
from invoicing_testkit import INVOICE_DATE, customer, period_closed, poll, put_seller, rated
from prometheus_client import REGISTRY

from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import serve, tenant_headers
from invoicing.buyer.service import record_customer
from invoicing.config import Settings
from invoicing.db import metadata
from invoicing.documents import service as documents_service
from invoicing.invoice.service import issue_invoice
from invoicing.main import build

pytestmark = pytest.mark.consume(False)


def rendering_processes() -> list[psutil.Process]:
    """This process's live children started by multiprocessing's spawn (the rendering processes;
    not its resource tracker, nor an embedded broker)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def gone(process: psutil.Process) -> bool:
    """The process has exited (a zombie until its parent reaps it counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def gauge() -> float | None:
    return REGISTRY.get_sample_value("billing_render_workers")


async def test_no_rendering_process_before_the_first_document_one_after_none_after_idling(migrated: str, kafka_bootstrap: str, tenant: str) -> None:
    at = INVOICE_DATE + timedelta(days=43, microseconds=uuid.uuid4().int % 1_000_000)
    # Processes an earlier test of this worker stopped may still be exiting.
    await poll(lambda: asyncio.sleep(0, rendering_processes()), lambda found: not found, timeout=60)
    settings = Settings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap, clock_fixed_at=at, render_ahead=False, render_idle_seconds=1.5)
    issuing = ServiceRuntime("invoicing", Settings(database_url=migrated, clock_fixed_at=at, render_ahead=False), metadata)
    try:
        async with serve(build(settings), consume=False) as client:
            await put_seller(client, tenant, name="Idle Ltd", country="IE", vat_id="IE6388047V", invoice_prefix="ID")
            buyer = customer(tenant, "idler", "Idler", country="IE")
            async with issuing.transaction() as session:
                await record_customer(issuing, session, buyer)
                invoice_id = await issue_invoice(
                    issuing, session, period_closed(tenant, buyer.account_id, [rated("l1", "M365-BP", "3", "20.60", "EUR")], currency="EUR")
                )
            await asyncio.sleep(0.5)  # the service's background loops are running: still nothing renders
            assert rendering_processes() == [] and gauge() == 0

            pdf = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
            live = rendering_processes()
            assert len(live) == 1 and [p.pid for p in live] == documents_service.pool_pids() and gauge() == 1
            assert live[0].memory_info().rss > 30 * 2**20  # a real interpreter with WeasyPrint loaded

            # Idle for longer than render_idle_seconds: the process exits.
            await poll(lambda: asyncio.sleep(0, (rendering_processes(), gone(live[0]))), lambda seen: not seen[0] and seen[1], timeout=30)
            assert gauge() == 0
            # The stored document still answers, without a rendering process; a new rendering starts one again.
            again = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=tenant_headers(tenant))
            assert again.status_code == 200 and again.content == pdf.content and rendering_processes() == []
            xml = await client.get(f"/v1/invoices/{invoice_id}/xml", headers=tenant_headers(tenant))
            assert xml.status_code == 200 and rendering_processes() == []  # rendered with the PDF, stored
    finally:
        documents_service.shutdown_pool()
        await issuing.engine.dispose()
