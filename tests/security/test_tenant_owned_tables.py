"""Tenant isolation by construction: every table of a service that holds a tenant's rows declares
its tenant column (`billing_runtime.tenancy.tenant_owned`), so its repository reads it through
`select_scoped` / `scoped`, which cannot be called without the tenant, rather than by a filter
written by hand (the cross-tenant matrix, test_cross_tenant.py, checks the behaviour)."""

from __future__ import annotations

import importlib

import pytest

from billing_runtime.tenancy import TENANT_COLUMN

TENANT_COLUMNS = ("tenant", "seller_id", "partner_id")
# The runtime's own tables (keyed by tenant by billing_runtime.conventions and the inbox/outbox).
RUNTIME_TABLES = {"audit_log", "idempotency_key", "inbox", "outbox"}
SERVICES = ("usage_ingest", "rating", "invoicing", "payments", "dunning", "notify")


@pytest.mark.parametrize("service", SERVICES)
def test_every_table_with_a_tenant_column_declares_it(service: str) -> None:
    importlib.import_module(f"{service}.main")  # every table registered, every repository imported
    metadata = importlib.import_module(f"{service}.db").metadata
    undeclared = [
        (table.name, [c for c in TENANT_COLUMNS if c in table.c])
        for table in metadata.sorted_tables
        if table.name not in RUNTIME_TABLES and any(c in table.c for c in TENANT_COLUMNS) and TENANT_COLUMN not in table.info
    ]
    assert undeclared == []
