"""Every query on brands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, Text, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import select_scoped, tenant_owned
from notify.brand.models import Brand, PaymentAccount

BRAND: Table = tenant_owned(Brand, "tenant")
PAYMENT_ACCOUNT: Table = tenant_owned(PaymentAccount, "tenant")
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


async def get_account(session: AsyncSession, tenant: str) -> PaymentAccount | None:
    row = (await session.execute(select_scoped(PAYMENT_ACCOUNT, tenant))).first()
    return PaymentAccount.model_validate(row._mapping) if row is not None else None


async def get_accounts(session: AsyncSession, tenants: list[str]) -> dict[str, PaymentAccount]:
    """The accounts of a batch's sellers, one query (a seller's id is its tenant)."""
    if not tenants:
        return {}
    rows = await session.execute(select(PAYMENT_ACCOUNT).where(PAYMENT_ACCOUNT.c.tenant == any_(bindparam("account_tenants", tenants, type_=ARRAY(Text)))))
    return {r.tenant: PaymentAccount.model_validate(r._mapping) for r in rows}


async def put_account(session: AsyncSession, account: PaymentAccount) -> bool:
    """Keep the announced account unless a later version is stored (equal instants: the later
    event on the seller's partition wins). False when it was older than the stored one."""
    values = account.model_dump()
    stmt = pg_insert(PAYMENT_ACCOUNT).values(**values)
    upsert = stmt.on_conflict_do_update(
        index_elements=["tenant"],
        set_={k: stmt.excluded[k] for k in values if k != "tenant"},
        where=PAYMENT_ACCOUNT.c.updated_at <= stmt.excluded.updated_at,
    ).returning(PAYMENT_ACCOUNT.c.tenant)
    return (await session.execute(upsert)).first() is not None
