"""The test harness's in-process `deliver`: events reach a service's handlers through the runtime's
own dispatch (inbox, one transaction per partition's batch, poison isolation, dead letters) with no
broker; and the event factories of billing_events.testing build valid events of every type.
Real PostgreSQL; no broker is started by these tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import CloudEvent, CustomerUpserted, PaymentSucceeded, account_id
from billing_events.testing import every_event_type, example_data, make_event
from billing_runtime.config import CommonSettings
from billing_runtime.errors import BillingError
from billing_runtime.service import ServiceRuntime
from billing_runtime.testing import deliver, migrate, publish_events

from .conftest import TallyToy


class Unwelcome(BillingError):
    code = "customer_unwelcome"


class Toy(TallyToy):
    """A throwaway service that counts the CustomerUpserted it applies per tenant and refuses
    a customer named "Mallory" with a coded error."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.runtime = ServiceRuntime(f"toy-{self.schema}", CommonSettings(database_url=database_url, consumer_max_attempts=2), self.metadata)
        self.runtime.on(CustomerUpserted, self.apply)

    async def apply(self, session: AsyncSession, event: CloudEvent[Any]) -> None:
        if event.data.name == "Mallory":
            raise Unwelcome("Mallory is not welcome")
        await self.count(session, event)


@pytest.fixture
async def toy(database_url: str) -> AsyncIterator[Toy]:
    toy = Toy(database_url)
    await toy.create()
    yield toy
    async with toy.runtime.engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA "{toy.schema}" CASCADE'))
    await toy.runtime.engine.dispose()


def customer_event(tenant: str, external_id: str, name: str = "Contoso") -> CloudEvent[CustomerUpserted]:
    account = account_id(tenant, external_id)
    return make_event(CustomerUpserted, tenant=tenant, subject=account, account_id=account, partner_id=tenant, external_id=external_id, name=name)


async def test_deliver_applies_each_event_once_through_the_inbox(toy: Toy) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    events = [customer_event(tenant, f"c{i}") for i in range(5)]  # several accounts: several partitions
    first = await deliver(toy.runtime, *events)
    assert sorted(first.applied) == sorted(e.id for e in events) and first.duplicates == [] and first.dead_lettered == []
    assert await toy.applied(tenant) == 5
    again = await deliver(toy.runtime, *events)  # redelivered: the inbox skips every one
    assert again.applied == [] and sorted(again.duplicates) == sorted(e.id for e in events)
    assert await toy.applied(tenant) == 5


async def test_deliver_dead_letters_a_poison_event_alone_with_its_code(toy: Toy) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    good, bad = customer_event(tenant, "c1"), customer_event(tenant, "c1", name="Mallory")  # one account: one batch
    delivery = await deliver(toy.runtime, good, bad)
    assert delivery.applied == [good.id]
    assert [letter.event_id for letter in delivery.dead_lettered] == [bad.id] and delivery.codes == ["customer_unwelcome"]
    assert "Mallory is not welcome" in delivery.dead_lettered[0].error
    assert await toy.applied(tenant) == 1
    inbox = toy.runtime.inbox_table
    async with toy.runtime.engine.connect() as conn:
        status = await conn.scalar(select(inbox.c.status).where(inbox.c.event_id == bad.id))
    assert status == "dead_lettered"


async def test_deliver_skips_a_type_the_service_does_not_route(toy: Toy) -> None:
    delivery = await deliver(toy.runtime, make_event(PaymentSucceeded, tenant="t"))
    assert delivery.skipped and not delivery.applied and not delivery.dead_lettered


async def test_publish_events_sends_a_raw_value_only_through_the_broker() -> None:
    """A poison value handed over in process would skip the broker's decoding it is meant to test."""
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="bootstrap address"):
            await publish_events(client, customer_event("t-raw", "c1"), raw_value=b"{")


@pytest.fixture
def ingest_database(database_url: str) -> str:
    return migrate(database_url, "usage_ingest")


async def test_deliver_reaches_a_real_service_built_by_its_main(ingest_database: str) -> None:
    """A real service's wiring (usage-ingest learns its catalogue from rating's ProductPublished)
    through `deliver(app, …)`: the same entry point whatever the service's registration style."""
    from billing_events import ProductPublished
    from usage_ingest.config import Settings
    from usage_ingest.main import build

    app = build(Settings(database_url=ingest_database))
    seller = f"s-{uuid.uuid4().hex[:6]}"
    event = make_event(ProductPublished, tenant=seller, subject=seller, seller_id=seller, product_code="widget")
    delivery = await deliver(app, event)
    assert delivery.applied == [event.id]
    async with app.state.runtime.engine.connect() as conn:
        known = await conn.scalar(text("SELECT count(*) FROM usage_ingest.catalogue_product WHERE seller_id = :s AND product_code = 'widget'"), {"s": seller})
    await app.state.runtime.engine.dispose()
    assert known == 1


@pytest.mark.parametrize("model", every_event_type(), ids=lambda m: m.event_type)
def test_every_event_type_has_a_factory(model: Any) -> None:
    event = make_event(model, tenant="partner-x", event_id="e-1")
    assert (event.type, event.tenant, event.id) == (model.event_type, "partner-x", "e-1")
    assert event.data.model_dump(mode="json") == model.model_validate(example_data(model)).model_dump(mode="json")


def test_a_factory_refuses_a_field_the_model_does_not_have() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        make_event(CustomerUpserted, colour="blue")
