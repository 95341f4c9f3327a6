"""What usage-ingest refuses for want of a product: an order of a product rating's catalogue does
not have (`unknown_product`), and negative usage of a product that takes no credits
(`negative_quantity`). The catalogue is rating's; usage-ingest keeps the projection its
`ProductPublished` events build (`consumers.py`).

Lag: rating publishes a product in the transaction that creates it, and usage-ingest applies it a
moment later (the relay, the broker, the consumer: well under a second on a healthy platform).
An order posted in that moment is refused like any order of an unknown product: a 422 code the
partner can act on, with a message that says the catalogue may not have arrived yet, and nothing
stored, so posting the same record again (same id) once the product is known accepts it. This
was chosen over accepting it unchecked: an accepted order for a product that never comes is the
"unrated at the bill run" this check exists to prevent, and a retry costs the partner nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import BillRunClosed, ProductPublished
from billing_runtime.telemetry import start_at_zero
from usage_ingest.catalogue import repository as repo

tracer = trace.get_tracer(__name__)
REFUSED = Counter("billing_ingest_catalogue_refusals_total", "Records refused against rating's catalogue, by kind and code", ["kind", "code"])
PROJECTED = Counter("billing_ingest_catalogue_products_total", "ProductPublished events applied to the catalogue projection, by outcome", ["outcome"])
CLOSED_RUNS = Counter("billing_ingest_closed_periods_total", "BillRunClosed events applied to the closed periods, by tier and outcome", ["tier", "outcome"])

UNKNOWN_PRODUCT = "unknown_product"
NEGATIVE_QUANTITY = "negative_quantity"


async def record_product(session: AsyncSession, data: ProductPublished) -> None:
    """A product at its revision (the latest revision wins; an older one changes nothing)."""
    row = {
        "seller_id": data.seller_id,
        "product_code": data.product_code,
        "name": data.name,
        "quantity_rule": data.quantity_rule,
        "allows_credits": data.allows_credits,
        "wholesale": data.wholesale,
        "revision": data.revision,
        "updated_at": data.updated_at,
    }
    changed = await repo.upsert(session, row)
    PROJECTED.labels("applied" if changed else "stale").inc()


async def record_closed_run(session: AsyncSession, data: BillRunClosed) -> None:
    """A period a bill run has closed; the same run again changes nothing."""
    row = {
        "bill_run_id": data.bill_run_id,
        "seller_id": data.seller_id,
        "tier": data.tier,
        "period_start": data.period_start,
        "period_end": data.period_end,
        "closed_at": data.closed_at,
    }
    new = await repo.insert_closed(session, row)
    CLOSED_RUNS.labels(data.tier, "applied" if new else "repeated").inc()


async def closed_periods(session: AsyncSession, tenant: str, days: Iterable[date]) -> list[tuple[date, date]]:
    """The closed periods (first and last day) that any of `days` falls in, for `tenant`: one
    statement for the whole span of the days."""
    wanted = sorted(set(days))
    if not wanted:
        return []
    rows = await repo.closed_between(session, tenant, wanted[0], wanted[-1])
    return sorted({(r.period_start, r.period_end) for r in rows})


async def products_of(session: AsyncSession, tenant: str, codes: Iterable[str]) -> dict[str, bool]:
    """The codes a tenant may use, each with whether it takes credits: the tenant's own product,
    else the distributor's of the same code (rating's rule, `PriceBook`)."""
    own: dict[str, bool] = {}
    wholesale: dict[str, bool] = {}
    for row in await repo.visible(session, tenant, codes):
        if row.seller_id == tenant:
            own[row.product_code] = row.allows_credits
        else:  # one distributor per platform; several only where tests make one each
            wholesale[row.product_code] = wholesale.get(row.product_code, False) or row.allows_credits
    return {**wholesale, **own}


def _unknown(code: str) -> str:
    return (
        f"rating's catalogue has no product {code!r} for this partner or the distributor (PUT /v1/products/{code} on rating; "
        "a product created in the last seconds may not have reached usage-ingest yet: post the record again)"
    )


async def refusals(session: AsyncSession, tenant: str, kind: str, records: Sequence[tuple[int, Any]]) -> dict[int, tuple[str, str, str]]:
    """By index, the records of a batch the catalogue refuses, as (code, field, message). One
    statement for the batch, and none at all for a usage batch without negative quantities (the
    usual case) or a kind the catalogue does not judge (quantities)."""
    if kind == "order":
        judged = list(records)
    elif kind == "usage":
        judged = [(index, record) for index, record in records if record.quantity < 0]
    else:
        return {}
    if not judged:
        return {}
    with tracer.start_as_current_span("ingest catalogue", attributes={"billing.records": len(judged)}):
        known = await products_of(session, tenant, {record.product_code for _, record in judged})
    refused: dict[int, tuple[str, str, str]] = {}
    for index, record in judged:
        code = record.product_code
        if kind == "order" and code not in known:
            refused[index] = (UNKNOWN_PRODUCT, "product_code", _unknown(code))
        elif kind == "usage" and not known.get(code, False):
            why = "takes no credits (its policy's allows_credits)" if code in known else "is not in rating's catalogue (yet)"
            refused[index] = (NEGATIVE_QUANTITY, "quantity", f"quantity {record.quantity} is negative and product {code!r} {why}")
    for code, _, _ in refused.values():
        REFUSED.labels(kind, code).inc()
    return refused


start_at_zero(REFUSED, ("order", "usage"), (UNKNOWN_PRODUCT, NEGATIVE_QUANTITY))
