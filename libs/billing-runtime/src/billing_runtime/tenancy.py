"""Tenant isolation by construction: a repository queries a tenant's rows through `scoped`, which
cannot be called without the tenant and finds the table's tenant column itself.

A table is declared tenant-owned once, beside the repository that queries it:

    INVOICE = tenant_owned(Invoice, "seller_id")

    async def get_invoice(session, tenant, invoice_id):
        return (await session.execute(scoped(select(INVOICE), INVOICE, tenant).where(INVOICE.c.invoice_id == invoice_id))).first()

`scoped` refuses a table that declares no tenant column and an empty tenant (`TenantRequired`), so
a lookup by id that forgets the tenant fails the first time it runs instead of answering another
tenant's row. Another tenant's id then finds nothing, and the endpoint answers 404 as for an id
nobody has. `scoped_pairs` does the same for a batch whose rows belong to several tenants (an event
consumer's batch, each event's tenant from its envelope): one query, the (tenant, id) pairs as two
array parameters. `of_account` narrows a tenant's query to one billing account's rows for a key
restricted to that account, in the same spirit: another account's id is a 404 too, never a 403."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Column, Delete, Select, String, Table, Update, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY

TENANT_COLUMN = "billing_tenant_column"

Statement = TypeVar("Statement", Select[Any], Update, Delete)


class TenantRequired(ValueError):
    """A tenant-owned table queried without a tenant: a bug in the caller, never a client error."""


def _table(model: Table | type) -> Table:
    table = model if isinstance(model, Table) else getattr(model, "__table__", None)
    if not isinstance(table, Table):
        raise TypeError(f"{model!r} is neither a Table nor a mapped class")
    return table


def tenant_owned(model: Table | type, column: str) -> Table:
    """Declare `column` the tenant column of `model` (a Table or a mapped class); returns the Table."""
    table = _table(model)
    if column not in table.c:
        raise ValueError(f"{table.fullname} has no column {column!r}")
    table.info[TENANT_COLUMN] = column
    return table


def tenant_column(model: Table | type) -> Column[Any]:
    """The declared tenant column of `model`; LookupError when it declares none."""
    table = _table(model)
    name = table.info.get(TENANT_COLUMN)
    if name is None:
        raise LookupError(f"{table.fullname} declares no tenant column (tenant_owned)")
    column: Column[Any] = table.c[name]
    return column


def _require(tenant: object) -> str:
    if not isinstance(tenant, str) or not tenant:
        raise TenantRequired(f"a tenant is required, got {tenant!r}")
    return tenant


def scoped(statement: Statement, model: Table | type, tenant: str) -> Statement:
    """`statement` limited to `tenant`'s rows of `model` (a SELECT, UPDATE or DELETE)."""
    return statement.where(tenant_column(model) == _require(tenant))


def select_scoped(model: Table | type, tenant: str, *columns: Any) -> Select[Any]:
    """`SELECT columns (default: the whole row) FROM model WHERE <tenant column> = tenant`."""
    table = _table(model)
    return scoped(select(*columns) if columns else select(table), table, tenant)


def scoped_pairs(statement: Select[Any], model: Table | type, id_column: Column[Any], pairs: Sequence[tuple[str, str]]) -> Select[Any]:
    """`statement` limited to the rows whose (tenant, id) is one of `pairs`: for a batch that spans
    tenants. The pairs travel as two array parameters, so the statement is the same for any size."""
    for tenant, _ in pairs:
        _require(tenant)
    tenants = bindparam("scoped_tenants", [t for t, _ in pairs], type_=ARRAY(String))
    ids = bindparam("scoped_ids", [i for _, i in pairs], type_=ARRAY(String))
    wanted = select(func.unnest(tenants), func.unnest(ids))
    return statement.where(tuple_(tenant_column(model), id_column).in_(wanted))


def of_account(statement: Select[Any], account_column: Column[Any], account_id: str | None) -> Select[Any]:
    """`statement` limited to the rows whose `account_column` is `account_id` when one is given
    (a key restricted to one billing account, or a listing's account filter): that account's rows
    only, and another's as if they did not exist."""
    return statement if account_id is None else statement.where(account_column == account_id)
