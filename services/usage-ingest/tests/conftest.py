from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

from billing_events import ProductPublished, new_event
from billing_runtime.testing import deliver, service_under_test

Products = Callable[..., Awaitable[None]]


# The harness's `migrated`, `settings`, `app` and `client` (billing_runtime.testing) follow from it.
service = service_under_test("usage_ingest")


def product_event(seller: str, code: str, *, allows_credits: bool = False, wholesale: bool = False, revision: int = 1) -> ProductPublished:
    return ProductPublished(
        seller_id=seller,
        product_code=code,
        name=code.title(),
        quantity_rule="usage_sum",
        kind="usage",
        allows_credits=allows_credits,
        wholesale=wholesale,
        revision=revision,
        updated_at=datetime(2026, 10, 1, tzinfo=UTC),
    )


@pytest.fixture
async def products(app: FastAPI) -> AsyncIterator[Products]:
    """`await products(seller, *codes, allows_credits=…, wholesale=…)`: rating's ProductPublished of
    each code delivered in process to usage-ingest (the harness's `deliver`: its inbox, its
    transaction, its handler), as if rating had published them; the same app as `client`'s. The
    broker path has its own test (test_catalogue)."""

    async def published(seller: str, *codes: str, **knobs: bool | int) -> None:
        events = [new_event(product_event(seller, code, **knobs), source="rating", tenant=seller) for code in codes]  # type: ignore[arg-type]
        delivery = await deliver(app, *events)
        assert len(delivery.applied) == len(events), delivery

    yield published
    await app.state.runtime.engine.dispose()  # when no `client` started (and stopped) the app
