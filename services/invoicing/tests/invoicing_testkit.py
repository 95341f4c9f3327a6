"""Building, publishing and waiting for events in the invoicing tests."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Any, Literal, TypeVar

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billing_events import (
    Address,
    CloudEvent,
    CustomerUpserted,
    EventData,
    Money,
    PaymentSucceeded,
    PeriodClosed,
    RatedLine,
    new_event,
)
from billing_events.testing import make_customer
from billing_runtime.db import async_url
from billing_runtime.testing import eventually, fenced_records, outbox_drained, tenant_headers
from invoicing.config import Settings

T = TypeVar("T")
# Worked example A's invoice date: the first business day after October 2026.
INVOICE_DATE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OCT_START, OCT_END = date(2026, 10, 1), date(2026, 10, 31)

# Worked example A (BILLING-RULES.md): product, quantity, unit price, description.
EXAMPLE_A = [
    ("USR-SUP", "15", "35.00", "User support"),
    ("SRV-SUP", "3", "85.00", "Server support"),
    ("WKS-SUP", "18", "12.50", "Workstation support"),
    ("EML-HST", "11", "6.75", "Hosted email"),
    ("SETUP-CORE", "8", "25.00", "Setup"),
    ("STL-LIC", "2", "47.25", "PSA licence"),
    ("ITG-LIC", "3", "30.00", "Documentation licence"),
    ("SHIP-GND", "1", "52.50", "Ground shipping"),
]

# Worked example B's Irish seller, as the tax and credit-note tests save it (`put_seller(..., **CLOUDY)`).
CLOUDY = {"name": "Cloudy Ltd", "country": "IE", "vat_id": "IE6388047V", "invoice_prefix": "CL", "due_rule": {"net_days": 14}}


def rated(
    line_id: str,
    code: str,
    qty: str,
    price: str,
    currency: str = "USD",
    *,
    amount: str | None = None,
    description: str = "",
    start: date = OCT_START,
    end: date = OCT_END,
) -> RatedLine:
    exact = Decimal(amount) if amount is not None else Decimal(qty) * Decimal(price)
    return RatedLine(
        line_id=line_id,
        product_code=code,
        description=description or code,
        service_period_start=start,
        service_period_end=end,
        quantity=Decimal(qty),
        unit_price=Money.of(price, currency),
        amount=Money.of(exact, currency),
        quantity_rule="contracted",
    )


def example_a_lines() -> list[RatedLine]:
    return [rated(f"l-{i}", code, qty, price, description=desc) for i, (code, qty, price, desc) in enumerate(EXAMPLE_A, 1)]


def period_closed(
    seller: str,
    buyer: str,
    lines: list[RatedLine],
    *,
    currency: str = "USD",
    start: date = OCT_START,
    end: date = OCT_END,
    tier: Literal["retail", "wholesale"] = "retail",
) -> PeriodClosed:
    return PeriodClosed(
        tier=tier,
        bill_run_id=f"run-{seller}-{start:%Y-%m}",
        seller_id=seller,
        buyer_account_id=buyer,
        period_start=start,
        period_end=end,
        currency=currency,
        lines=lines,
    )


def customer(
    seller: str,
    external_id: str,
    name: str,
    *,
    country: str = "US",
    revision: int = 1,
    business: bool = True,
    vat_id: str | None = None,
    tax_exempt: bool = False,
    currency: str = "USD",
) -> CustomerUpserted:
    return make_customer(
        seller,
        external_id,
        name=name,
        country=country,
        currency=currency,
        revision=revision,
        business=business,
        vat_id=vat_id,
        tax_exempt=tax_exempt,
        address=Address(lines=[f"1 {name} Street"], city="Dublin" if country == "IE" else "City", postal_code="D01 1234", country=country),
    )


def payment(seller: str, invoice: dict[str, Any], amount: str, paid_on: date, payment_id: str | None = None) -> PaymentSucceeded:
    return PaymentSucceeded(
        payment_id=payment_id or f"pay-{uuid.uuid4().hex[:8]}",
        invoice_id=invoice["id"],
        seller_id=seller,
        account_id=invoice["buyer_account_id"],
        amount=Money.of(amount, invoice["currency"]),
        method="bank_transfer",
        provider="bank",
        paid_on=paid_on,
    )


def event(data: EventData, tenant: str, event_id: str | None = None) -> CloudEvent[Any]:
    return new_event(data, source="tests", tenant=tenant, event_id=event_id)


async def poll(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout: float = 60.0) -> T:
    """`fetch()` until `done(result)`, through the harness's one `eventually` (the result is
    given even when falsy, such as an empty list that is what the test waits for)."""
    last: list[T] = []

    async def probe() -> tuple[T] | None:
        result = await fetch()
        last[:] = [result]
        return (result,) if done(result) else None

    try:
        [result] = await eventually(probe, "the condition", timeout, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last result: {last[0] if last else None!r}") from None
    return result


async def invoices(client: httpx.AsyncClient, tenant: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/invoices", headers=tenant_headers(tenant), params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def wait_for_invoices(client: httpx.AsyncClient, tenant: str, count: int, **params: Any) -> list[dict[str, Any]]:
    return await poll(lambda: invoices(client, tenant, **params), lambda items: len(items) >= count)


async def raw_messages(bootstrap: str, topic: str, match: Callable[[dict[str, str]], bool], *, runtime: Any = None) -> list[dict[str, str]]:
    """Every message on `topic` (headers decoded, plus its value and key) that `match`es, of all
    published so far (`fenced_records`); with the service's `runtime`, once its relay has
    published all it wrote. For counting, where stopping at the first match would hide a duplicate."""
    if runtime is not None:
        await eventually(partial(outbox_drained, runtime), "the outbox relayed", 30)
    found: list[dict[str, str]] = []
    for m in await fenced_records(bootstrap, topic):
        fields = {name: value.decode() for name, value in (m.headers or [])}
        fields["value"] = (m.value or b"").decode()
        fields["key"] = (m.key or b"").decode()
        if match(fields):
            found.append(fields)
    return found


async def put_seller(client: httpx.AsyncClient, tenant: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Distributor Inc.",
        "country": "US",
        "vat_id": None,
        "invoice_prefix": "NW",
        "due_rule": {"day_of_next_month": 5},
        "email": "billing@distributor.example",
        **overrides,
    }
    r = await client.put("/v1/seller", headers=tenant_headers(tenant), json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def buyer_known(settings: Settings, account: str) -> None:
    """Wait until the consumer has stored a customer (it arrives on another topic than periods)."""
    engine = create_async_engine(async_url(settings.database_url))

    async def fetch() -> Any:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT name FROM invoicing.buyer WHERE account_id = :a"), {"a": account})

    try:
        await poll(fetch, lambda name: name is not None)
    finally:
        await engine.dispose()


def pdf_fonts(pdf: bytes) -> set[str]:
    """The font families a PDF embeds (poppler's pdffonts, subset prefix dropped): "DejaVu-Sans-Bold" -> "DejaVu-Sans"."""
    done = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, check=True).stdout.decode().splitlines()[2:]
    return {line.split()[0].split("+", 1)[-1].removesuffix("-Bold") for line in done if line.strip()}
