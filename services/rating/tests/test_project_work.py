"""Seed 001's project work: time and materials posted as usage of a `project_work` product are
announced at once, priced at the distributor's wholesale price (ProjectWorkRecorded, for the
statement invoicing sends), and still billed by the next bill run like any usage."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from billing_events import ProjectWorkRecorded, UsageRecorded, account_id
from billing_events.testing import make_customer
from billing_events.topics import PERIODS
from billing_runtime.testing import all_events, eventually, outbox_drained, read_events, tenant_headers

from .conftest import published

WHEN = datetime(2026, 10, 14, 15, 0, tzinfo=UTC)


def usage(tenant: str, record_id: str, product: str, quantity: str) -> UsageRecorded:
    return UsageRecorded(
        record_id=record_id,
        account_id=account_id(tenant, "contoso"),
        partner_id=tenant,
        product_code=product,
        quantity=Decimal(quantity),
        occurred_at=WHEN,
    )


async def test_time_and_materials_are_announced_priced_for_their_statement(
    client: httpx.AsyncClient, app: FastAPI, producer: AIOKafkaProducer, tenant: str, distributor: str, kafka_bootstrap: str
) -> None:
    partner = tenant
    for code, name, price, rule, kind in (
        ("PROJ-TM", "Project work (per hour)", "125.00", "usage_sum", "project_work"),
        ("BKP-GB", "Backup storage per GB", "0.10", "usage_sum", None),
    ):
        body = {"name": name, "unit_price": price, "currency": "USD", "description": None, "category": "Hardware as a Project", "quantity_rule": rule}
        r = await client.put(f"/v1/products/{code}", headers=tenant_headers(distributor), json={**body, **({"kind": kind} if kind else {})})
        assert r.status_code == 200, r.text
    contoso = make_customer(partner, "contoso", name="Contoso Dental", country="US", currency="USD")
    await published(producer, partner, contoso)
    # The partner's billing account at the distributor (the buyer of its wholesale invoice).
    at_distributor = make_customer(distributor, partner, name="Northwind IT", billing_email="ap@northwind.example", country="US", currency="USD")
    await published(producer, distributor, at_distributor)

    async def known() -> bool:  # customers and usage travel on different topics: both accounts first
        checks = ((partner, contoso.account_id), (distributor, at_distributor.account_id))
        for tenant_id, account in checks:
            body = {"account_id": account, "product_code": "PROJ-TM", "start_on": "2026-10-14"}
            if (await client.post("/v1/order-checks", headers=tenant_headers(tenant_id), json=body)).status_code == 404:
                return False  # account_not_found until the customer is applied
        return True

    await eventually(known, "rating to know Contoso")

    entry = await published(producer, partner, usage(partner, "tm-42", "PROJ-TM", "2.5"))
    await published(producer, partner, usage(partner, "bk-1", "BKP-GB", "40"))
    await published(producer, partner, usage(partner, "tm-42", "PROJ-TM", "2.5"))  # posted again

    [announced] = await read_events(
        kafka_bootstrap,
        PERIODS.name,
        until=lambda found: len(found) >= 1,
        match=lambda e: e.type == ProjectWorkRecorded.event_type and e.data.buyer_account_id == at_distributor.account_id,
    )
    work: ProjectWorkRecorded = announced.data
    assert announced.tenant == distributor and entry.data.record_id == work.entry_id
    who = (work.seller_id, work.tier, work.end_customer_id, work.end_customer_name)
    assert who == (distributor, "wholesale", account_id(partner, "contoso"), "Contoso Dental")
    assert (work.product_code, work.quantity, work.unit_price.amount, work.amount.amount, work.amount.currency) == (
        "PROJ-TM",
        Decimal("2.5"),
        Decimal("125.00"),
        Decimal("312.500"),
        "USD",
    )
    assert (work.performed_on, work.billed_with_period_start, work.billed_with_period_end) == (date(2026, 10, 14), date(2026, 10, 1), date(2026, 10, 31))

    # Once rating's outbox is drained, the entry posted twice and the backup usage announced nothing more.
    await eventually(lambda: outbox_drained(app.state.runtime), "rating's outbox drained")
    every = await all_events(
        kafka_bootstrap, PERIODS.name, match=lambda e: e.type == ProjectWorkRecorded.event_type and e.data.buyer_account_id == at_distributor.account_id
    )
    assert [e.data.entry_id for e in every] == ["tm-42"]

    # The charge itself comes on the next regular invoice: the distributor's bill run for October
    # bills the partner for it, as project work in Contoso's section (invoicing groups by end customer).
    run = await client.post("/v1/bill-runs", headers=tenant_headers(distributor), json={"period": "2026-10"})
    assert run.status_code == 201, run.text
    [closed] = await read_events(
        kafka_bootstrap,
        PERIODS.name,
        until=lambda found: len(found) >= 1,
        match=lambda e: e.type == "billing.period.closed.v1" and e.tenant == distributor and e.data.buyer_account_id == at_distributor.account_id,
    )
    billed = [
        (li.product_code, li.kind, li.end_customer_id, li.end_customer_name, li.amount.amount) for li in closed.data.lines if li.product_code == "PROJ-TM"
    ]
    assert billed == [("PROJ-TM", "project_work", account_id(partner, "contoso"), "Contoso Dental", Decimal("312.500"))]
    assert closed.data.tier == "wholesale"
