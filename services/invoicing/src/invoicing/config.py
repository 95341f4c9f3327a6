from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from billing_runtime.config import CommonSettings


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="INVOICING_", extra="ignore")

    default_due_net_days: int = Field(default=30, ge=0, le=365, description="Due rule of a seller that never set one.")
    distributor_id: str = Field(
        default="distributor",
        description="The distributor's tenant: the one seller whose wholesale previews may name a partner (its seller profile is the buyer).",
    )
    max_page_size: int = Field(default=200, ge=1, le=1000)
    vies_url: str | None = Field(default=None, description="VIES check-vat-number endpoint; unset: VAT numbers are checked offline only.")
    vies_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    public_base_url: str | None = Field(
        default=None,
        description="Invoicing's address as buyers reach it (https://billing.example.com/invoicing): makes the shared document "
        "links in events and emails absolute. Unset: they are relative to invoicing.",
    )
    vies_requester_vat_id: str | None = Field(default=None, description="Our own VAT number, sent to VIES so that its answer carries a consultation number.")
    render_workers: int = Field(
        default_factory=lambda: default_render_workers(),
        ge=1,
        le=32,
        description="Processes rendering documents (WeasyPrint is CPU-bound: off the event loop and the GIL, at most this many at once). "
        "Default: the cores this process may run on, at most 4 (about 100 MB each). A process starts only when a "
        "document finds none idle.",
    )
    render_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="The rendering processes exit after this long with no document to render (the next one starts a process again, about 1 s).",
    )
    render_documents_per_process: int = Field(
        default=100,
        ge=1,
        le=10000,
        description="A rendering process is replaced after this many documents: its memory grows with WeasyPrint's and Pango's caches.",
    )
    render_ahead: bool = Field(
        default=True,
        description="Render each issued invoice's PDF and XML in the background after it commits, so its first download "
        "(the invoice email's attachment) is served stored. Off: documents render on their first download only.",
    )
    render_ahead_batch: int = Field(default=8, ge=1, le=500, description="Invoices the background renderer takes per look.")
    render_ahead_workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Invoices the background renderer renders at once, so rendering processes it keeps busy (at most render_workers): "
        "the others are left to downloads, and a month close holds one rendering process, not one per core.",
    )
    render_ahead_poll_ms: int = Field(default=1000, ge=10, description="Wait before looking again when no invoice was left to render.")


def default_render_workers() -> int:
    """One rendering process per core this process may run on (a rendering is about 90 ms of CPU),
    at most 4: each holds about 100 MB while it lives."""
    return max(1, min(4, len(os.sched_getaffinity(0))))
