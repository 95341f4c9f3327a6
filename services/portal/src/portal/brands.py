"""The partner's brand on the portal's pages. Notify owns it (`GET /v1/brand`); the portal keeps the
last one it was shown (`portal_brand`) so that pages nobody is signed in to yet, the sign-in form
on the partner's own host above all, wear it too."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from billing_runtime.auth import TENANT_PATTERN
from portal import db

DEFAULT_COLOR = "#1F4E79"
# How long a brand read from the table is trusted before it is read again (another instance of the
# portal may have learnt a newer one).
CACHE_SECONDS = 30.0
MAX_TENANTS = 10_000


@dataclass(frozen=True)
class Brand:
    name: str
    color: str
    logo_url: str | None
    footer: str | None

    @classmethod
    def from_notify(cls, b: dict[str, Any]) -> Brand:
        return cls(b["sender_name"], b["primary_color"], b.get("logo_url"), b.get("footer"))


class Brands:
    """tenant → Brand, in memory (`known`, read by the synchronous page renderer) over the table."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.known: dict[str, Brand] = {}
        self._loaded_at: dict[str, float] = {}

    def get(self, tenant: str) -> Brand:
        return self.known.get(tenant) or Brand(tenant, DEFAULT_COLOR, None, None)

    async def warm(self, tenant: str) -> None:
        """Read the tenant's brand from the table unless it was read (or learnt) moments ago."""
        if not TENANT_PATTERN.match(tenant) or time.monotonic() - self._loaded_at.get(tenant, -CACHE_SECONDS) < CACHE_SECONDS:
            return
        if len(self._loaded_at) > MAX_TENANTS:  # paths naming made-up tenants must not grow this without end
            self._loaded_at.clear()
        async with self.runtime.sessions() as session:
            row = (await session.execute(select(db.brand).where(db.brand.c.tenant == tenant))).first()
        self._loaded_at[tenant] = time.monotonic()
        if row is not None:
            self.known[tenant] = Brand(row.name, row.color, row.logo_url, row.footer)

    async def remember(self, tenant: str, brand: Brand) -> None:
        """What notify just showed: kept in memory, and in the table when it changed."""
        self._loaded_at[tenant] = time.monotonic()
        if self.known.get(tenant) == brand:
            return
        self.known[tenant] = brand
        values = {"name": brand.name[:100], "color": brand.color, "logo_url": brand.logo_url, "footer": brand.footer, "updated_at": self.runtime.clock.now()}
        async with self.runtime.transaction() as session:
            await session.execute(pg_insert(db.brand).values(tenant=tenant, **values).on_conflict_do_update(index_elements=["tenant"], set_=values))
