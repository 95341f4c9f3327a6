"""Every query on brands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from notify.brand.models import Brand

BRAND: Table = tenant_owned(Brand, "tenant")
_FIELDS = (
    "sender_name",
    "sender_email",
    "logo_url",
    "primary_color",
    "footer",
    "support_email",
    "support_phone",
    "portal_url",
    "bank_account_name",
    "iban",
    "bic",
)


async def get(session: AsyncSession, tenant: str) -> Brand | None:
    row = (await session.execute(select_scoped(BRAND, tenant))).first()
    return Brand.model_validate(row._mapping) if row is not None else None


async def put(session: AsyncSession, tenant: str, values: dict[str, str | None], at: datetime) -> Brand:
    stmt = pg_insert(BRAND).values(tenant=tenant, updated_at=at, **values)
    upsert = stmt.on_conflict_do_update(index_elements=["tenant"], set_={k: stmt.excluded[k] for k in (*_FIELDS, "updated_at")}).returning(*BRAND.c)
    row = (await session.execute(upsert)).one()
    return Brand.model_validate(row._mapping)
