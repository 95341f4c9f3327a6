"""Every query on the delivery log and the known invoices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Table, Text, and_, any_, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.tenancy import of_account, scoped_pairs, select_scoped, tenant_column, tenant_owned
from notify import sending
from notify.brand.models import Brand, PaymentAccount
from notify.brand.repository import BRAND, PAYMENT_ACCOUNT, get_accounts
from notify.contact.models import Contact
from notify.contact.repository import CONTACT
from notify.delivery.models import Delivery, KnownInvoice

DELIVERY: Table = tenant_owned(Delivery, "tenant")
KNOWN_INVOICE: Table = tenant_owned(KnownInvoice, "tenant")

DUE_STATUSES = sending.DUE_STATUSES


async def remember_invoice_and_look_up(session: AsyncSession, invoice: KnownInvoice) -> tuple[Contact | None, Brand | None, PaymentAccount | None]:
    """Remember the invoice, and read its buyer's contact, its seller's brand and bank account, in one statement:
    an invoice email is decided once per invoice of a month close, and three round trips were most
    of its cost. (Reads the contact and brand tables of the sibling packages, as their own
    repositories would.)"""
    remembered = (
        pg_insert(KNOWN_INVOICE)
        .values(**invoice.model_dump())
        .on_conflict_do_nothing(index_elements=["invoice_id"])
        .returning(KNOWN_INVOICE.c.invoice_id)
        .cte("remembered")
    )
    anchor = select(literal(1).label("one")).subquery("anchor")
    query = select(
        *[c.label(f"contact_{c.name}") for c in CONTACT.c],
        *[c.label(f"brand_{c.name}") for c in BRAND.c],
        *[c.label(f"account_{c.name}") for c in PAYMENT_ACCOUNT.c],
        select(func.count()).select_from(remembered).scalar_subquery().label("remembered"),
    ).select_from(
        anchor.outerjoin(CONTACT, and_(CONTACT.c.account_id == invoice.buyer_account_id, tenant_column(CONTACT) == invoice.tenant))
        .outerjoin(BRAND, tenant_column(BRAND) == invoice.tenant)
        .outerjoin(PAYMENT_ACCOUNT, tenant_column(PAYMENT_ACCOUNT) == invoice.tenant)
    )
    row = (await session.execute(query)).one()._mapping
    contact = Contact.model_validate({c.name: row[f"contact_{c.name}"] for c in CONTACT.c}) if row["contact_account_id"] is not None else None
    brand = Brand.model_validate({c.name: row[f"brand_{c.name}"] for c in BRAND.c}) if row["brand_tenant"] is not None else None
    account = PaymentAccount.model_validate({c.name: row[f"account_{c.name}"] for c in PAYMENT_ACCOUNT.c}) if row["account_tenant"] is not None else None
    return contact, brand, account


async def remember_invoices_and_look_up(
    session: AsyncSession, invoices: list[KnownInvoice]
) -> tuple[dict[str, Contact], dict[str, Brand], dict[str, PaymentAccount]]:
    """Remember a batch of invoices (one multi-row insert), and read their buyers' contacts,
    their sellers' brands and bank accounts (one query each): the batch form of
    `remember_invoice_and_look_up`."""
    if not invoices:
        return {}, {}, {}
    await session.execute(pg_insert(KNOWN_INVOICE).values([i.model_dump() for i in invoices]).on_conflict_do_nothing(index_elements=["invoice_id"]))
    buyers = sorted({(i.tenant, i.buyer_account_id) for i in invoices})
    tenants = sorted({i.tenant for i in invoices})
    contact_rows = await session.execute(scoped_pairs(select(CONTACT), CONTACT, CONTACT.c.account_id, buyers))
    brand_rows = await session.execute(select(BRAND).where(BRAND.c.tenant == any_(bindparam("tenants", tenants, type_=ARRAY(Text)))))
    contacts = {r.account_id: Contact.model_validate(r._mapping) for r in contact_rows}
    brands = {r.tenant: Brand.model_validate(r._mapping) for r in brand_rows}
    return contacts, brands, await get_accounts(session, tenants)


async def known_invoice(session: AsyncSession, tenant: str, invoice_id: str) -> KnownInvoice | None:
    row = (await session.execute(select_scoped(KNOWN_INVOICE, tenant).where(KNOWN_INVOICE.c.invoice_id == invoice_id))).first()
    return KnownInvoice.model_validate(row._mapping) if row is not None else None


async def latest_invoice_of_account(session: AsyncSession, tenant: str, account_id: str) -> KnownInvoice | None:
    """The account's latest invoice from the seller, for a message about the account as a whole."""
    query = (
        select_scoped(KNOWN_INVOICE, tenant)
        .where(KNOWN_INVOICE.c.buyer_account_id == account_id)
        .order_by(KNOWN_INVOICE.c.issued_on.desc(), KNOWN_INVOICE.c.invoice_id.desc())
        .limit(1)
    )
    row = (await session.execute(query)).first()
    return KnownInvoice.model_validate(row._mapping) if row is not None else None


async def insert_delivery(session: AsyncSession, delivery: Delivery) -> bool:
    """Insert unless a delivery with this id exists; True if this call inserted it."""
    stmt = pg_insert(DELIVERY).values(**delivery.model_dump()).on_conflict_do_nothing(index_elements=["delivery_id"]).returning(DELIVERY.c.delivery_id)
    return (await session.execute(stmt)).first() is not None


async def insert_deliveries(session: AsyncSession, deliveries: list[Delivery]) -> set[str]:
    """Insert the deliveries whose id is new, in one statement; the ids this call inserted."""
    if not deliveries:
        return set()
    stmt = (
        pg_insert(DELIVERY)
        .values([d.model_dump() for d in deliveries])
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(DELIVERY.c.delivery_id)
    )
    return set((await session.execute(stmt)).scalars())


async def mark_sent_many(session: AsyncSession, sent: list[tuple[str, datetime]]) -> set[str]:
    """Mark each (delivery id, sent at) sent in one statement, unless the row is no longer
    `sending` (then another sender has it); returns the ids marked."""
    if not sent:
        return set()
    given = select(
        func.unnest(bindparam("ids", [i for i, _ in sent], type_=ARRAY(Text))).label("delivery_id"),
        func.unnest(bindparam("ats", [at for _, at in sent], type_=ARRAY(DateTime(timezone=True)))).label("sent_at"),
    ).subquery("sent")
    result = await session.execute(
        update(DELIVERY)
        .where(DELIVERY.c.delivery_id == given.c.delivery_id, DELIVERY.c.status == "sending")
        .values(status="sent", sent_at=given.c.sent_at, next_attempt_at=None, last_error=None)
        .returning(DELIVERY.c.delivery_id)
    )
    return set(result.scalars())


async def mark_unsent(session: AsyncSession, delivery_id: str, *, status: str, next_attempt_at: datetime | None, error: str) -> bool:
    result = await session.execute(
        update(DELIVERY)
        .where(DELIVERY.c.delivery_id == delivery_id, DELIVERY.c.status == "sending")
        .values(status=status, next_attempt_at=next_attempt_at, last_error=error)
        .returning(DELIVERY.c.delivery_id)
    )
    return result.first() is not None


async def get_delivery(session: AsyncSession, tenant: str, delivery_id: str) -> Delivery | None:
    row = (await session.execute(select_scoped(DELIVERY, tenant).where(DELIVERY.c.delivery_id == delivery_id))).first()
    return Delivery.model_validate(row._mapping) if row is not None else None


async def list_deliveries(
    session: AsyncSession,
    tenant: str,
    *,
    account_id: str | None,
    status: str | None,
    template: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Delivery]:
    """Newest first; `after` is the (created_at, delivery_id) of the last row already seen."""
    query = of_account(select_scoped(DELIVERY, tenant), DELIVERY.c.account_id, account_id)
    filters: list[Any] = []
    if status is not None:
        filters.append(DELIVERY.c.status == status)
    if template is not None:
        filters.append(DELIVERY.c.template == template)
    if after is not None:
        created_at, delivery_id = after
        same_instant = and_(DELIVERY.c.created_at == created_at, DELIVERY.c.delivery_id < delivery_id)
        filters.append(or_(DELIVERY.c.created_at < created_at, same_instant))
    query = query.where(*filters).order_by(DELIVERY.c.created_at.desc(), DELIVERY.c.delivery_id.desc()).limit(limit)
    return [Delivery.model_validate(r._mapping) for r in await session.execute(query)]
