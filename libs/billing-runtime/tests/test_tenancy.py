"""`scoped`: a tenant-owned table cannot be queried without the tenant, and the query it builds
finds the tenant's rows only (on the real PostgreSQL); `of_account` narrows it to one account's."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, MetaData, String, Table, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ClauseElement

from billing_runtime.db import create_engine
from billing_runtime.tenancy import TenantRequired, of_account, scoped, scoped_pairs, select_scoped, tenant_column, tenant_owned

metadata = MetaData()
ITEM = tenant_owned(
    Table(
        "tenancy_item",
        metadata,
        Column("tenant", String, primary_key=True),
        Column("item_id", String, primary_key=True),
        Column("name", String),
        Column("account_id", String),
    ),
    "tenant",
)
UNDECLARED = Table("tenancy_undeclared", metadata, Column("item_id", String, primary_key=True))


def sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=postgresql.dialect()))


def test_the_tenant_column_is_declared_once_and_required() -> None:
    assert tenant_column(ITEM) is ITEM.c.tenant
    assert "tenancy_item.tenant = %(tenant_1)s" in sql(scoped(select(ITEM), ITEM, "a"))
    assert "WHERE tenancy_item.tenant = " in sql(scoped(update(ITEM).values(name="x"), ITEM, "a"))
    for missing in ("", None):
        with pytest.raises(TenantRequired):
            scoped(select(ITEM), ITEM, missing)  # type: ignore[arg-type]  # no tenant, on purpose
    with pytest.raises(LookupError, match="declares no tenant column"):
        select_scoped(UNDECLARED, "a")
    with pytest.raises(ValueError, match="no column"):
        tenant_owned(UNDECLARED, "tenant")
    with pytest.raises(TenantRequired):
        scoped_pairs(select(ITEM), ITEM, ITEM.c.item_id, [("a", "1"), ("", "2")])


async def test_another_tenants_id_finds_nothing(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: ITEM.create(sync, checkfirst=True))
            rows = [
                {"tenant": a, "item_id": "1", "name": "a's", "account_id": "acct-1"},
                {"tenant": b, "item_id": "1", "name": "b's", "account_id": "acct-1"},
                {"tenant": b, "item_id": "2", "name": "b's 2", "account_id": "acct-2"},
            ]
            await conn.execute(ITEM.insert(), rows)
        async with engine.connect() as conn:
            mine = (await conn.execute(select_scoped(ITEM, a, ITEM.c.name).where(ITEM.c.item_id == "1"))).scalars().all()
            theirs = (await conn.execute(select_scoped(ITEM, a).where(ITEM.c.item_id == "2"))).all()
            batch = scoped_pairs(select(ITEM.c.name), ITEM, ITEM.c.item_id, [(a, "1"), (b, "2"), (a, "2")]).order_by(ITEM.c.name)
            pairs = (await conn.execute(batch)).scalars().all()
            by_id = select_scoped(ITEM, b, ITEM.c.name).where(ITEM.c.item_id == "2")
            own = (await conn.execute(of_account(by_id, ITEM.c.account_id, "acct-2"))).scalars().all()
            other_accounts = (await conn.execute(of_account(by_id, ITEM.c.account_id, "acct-1"))).scalars().all()
            unrestricted = (await conn.execute(of_account(select_scoped(ITEM, b, ITEM.c.name), ITEM.c.account_id, None).order_by(ITEM.c.name))).scalars().all()
        assert (mine, theirs, pairs) == (["a's"], [], ["a's", "b's 2"])
        assert (own, other_accounts, unrestricted) == (["b's 2"], [], ["b's", "b's 2"])
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM tenancy_item WHERE tenant IN (:a, :b)"), {"a": a, "b": b})
        await engine.dispose()
