"""Issuing a batch of closed periods in one transaction (`issue_invoices`), against the real
PostgreSQL: numbers gapless per seller, the same invoice as one issue makes, repeats issue nothing,
a period that cannot be invoiced names itself and leaves nothing written."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest
from invoicing_testkit import customer, event, period_closed, rated
from sqlalchemy import text

from billing_events import InvoiceIssued, account_id
from billing_runtime.service import ServiceRuntime
from invoicing.buyer.service import record_customer
from invoicing.config import Settings
from invoicing.invoice import repository as invoice_repo
from invoicing.invoice.consumers import on_periods_closed
from invoicing.invoice.service import PeriodClosedRejected, issue_invoice, issue_invoices
from invoicing.seller.schemas import NetDays, SellerSettingsIn
from invoicing.seller.service import put_seller


async def _irish_seller(runtime: ServiceRuntime[Settings], seller: str, prefix: str) -> None:
    profile = SellerSettingsIn(name=f"Seller {seller}", country="IE", vat_id="IE6388047V", invoice_prefix=prefix, due_rule=NetDays(net_days=14))
    async with runtime.transaction() as session:
        await put_seller(runtime, session, seller, profile)


async def _buyers(runtime: ServiceRuntime[Settings], seller: str, n: int) -> list[str]:
    """n buyers of `seller`: Irish businesses, German businesses with a VAT id, French consumers, in turn."""
    kinds = (("IE", True, None), ("DE", True, "DE136695976"), ("FR", False, None))
    async with runtime.transaction() as session:
        for i in range(n):
            country, business, vat_id = kinds[i % 3]
            await record_customer(runtime, session, customer(seller, f"b{i}", f"Buyer {i}", country=country, business=business, vat_id=vat_id, currency="EUR"))
    return [account_id(seller, f"b{i}") for i in range(n)]


def _lines(i: int) -> list[Any]:
    return [rated(f"l{j}", f"SKU-{j}", str(1 + (i + j) % 4), "20.60", "EUR") for j in range(3)]


async def _rows(runtime: ServiceRuntime[Settings], sql: str, **params: Any) -> list[Any]:
    async with runtime.sessions() as session:
        return list((await session.execute(text(sql), params)).all())


async def test_a_batch_numbers_each_seller_gaplessly_in_batch_order(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    sellers = [f"{tenant}-a", f"{tenant}-b"]
    for seller, prefix in zip(sellers, ("A", "B"), strict=True):
        await _irish_seller(runtime, seller, prefix)
    buyers = {seller: await _buyers(runtime, seller, 6) for seller in sellers}
    periods = [period_closed(seller, buyers[seller][i], _lines(i), currency="EUR") for i in range(6) for seller in sellers]

    async with runtime.transaction() as session:
        ids = await issue_invoices(runtime, session, periods)

    assert all(ids) and len(set(ids)) == 12
    for seller, prefix in zip(sellers, ("A", "B"), strict=True):
        rows = await _rows(runtime, "SELECT buyer_account_id, seq, number FROM invoicing.invoice WHERE seller_id = :s ORDER BY seq", s=seller)
        assert [(r.buyer_account_id, r.seq, r.number) for r in rows] == [(b, i, f"{prefix}-{i:06d}") for i, b in enumerate(buyers[seller], start=1)]
        counter = await _rows(runtime, "SELECT last_seq FROM invoicing.invoice_number_counter WHERE seller_id = :s", s=seller)
        assert counter[0].last_seq == 6
    lines = await _rows(runtime, "SELECT invoice_id, count(*) AS n FROM invoicing.invoice_line WHERE invoice_id = ANY(:ids) GROUP BY invoice_id", ids=ids)
    assert {r.invoice_id: r.n for r in lines} == dict.fromkeys(ids, 3)
    # Each InvoiceIssued names its own shared links, the ones stored for its invoice.
    outbox = await _rows(runtime, "SELECT value FROM invoicing.outbox WHERE event_type = :t AND key = ANY(:keys)", t=InvoiceIssued.event_type,
                         keys=[b.encode() for s in sellers for b in buyers[s]])  # fmt: skip
    shares = await _rows(runtime, "SELECT owner_id, format, token FROM invoicing.document_share WHERE owner_id = ANY(:ids)", ids=ids)
    stored = {(r.owner_id, r.format): r.token for r in shares}
    assert len(outbox) == 12 and len(stored) == 36
    for (value,) in outbox:
        issued = InvoiceIssued.model_validate(json.loads(value))
        tokens = {link.kind: (link.shared_url or "").rsplit("/", 1)[-1] for link in issued.documents}
        assert tokens == {f: stored[(issued.invoice_id, fmt)] for f, fmt in (("pdf", "pdf"), ("cii_xml", "xml"), ("ubl_xml", "ubl"))}


async def test_a_batch_issues_what_one_issue_at_a_time_does(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """The same closed periods, for two sellers set up alike: one issued one by one, the other in a batch."""
    one, batch = f"{tenant}-one", f"{tenant}-batch"
    for seller in (one, batch):
        await _irish_seller(runtime, seller, "X")
    singles = [period_closed(one, b, _lines(i), currency="EUR") for i, b in enumerate(await _buyers(runtime, one, 6))]
    batched = [period_closed(batch, b, _lines(i), currency="EUR") for i, b in enumerate(await _buyers(runtime, batch, 6))]
    for closed in singles:
        async with runtime.transaction() as session:
            await issue_invoice(runtime, session, closed)
    async with runtime.transaction() as session:
        await issue_invoices(runtime, session, batched)

    def same(rows: list[Any]) -> list[tuple[Any, ...]]:
        return [tuple(json.dumps(v, sort_keys=True).replace(one, "S").replace(batch, "S") if isinstance(v, (dict, list)) else v for v in r) for r in rows]

    invoice_sql = (
        "SELECT seq, number, status, currency, net_total, tax_total, total, issued_on, due_on, tax_breakdown, flags, tier,"
        " buyer - 'account_id' AS buyer, seller - 'account_id' AS seller FROM invoicing.invoice WHERE seller_id = :s ORDER BY seq"
    )
    line_sql = (
        "SELECT i.seq, l.position, l.line_id, l.net, l.tax_rate, l.tax_category, l.tax_scheme, l.tax_country"
        " FROM invoicing.invoice_line l JOIN invoicing.invoice i USING (invoice_id) WHERE i.seller_id = :s ORDER BY i.seq, l.position"
    )
    assert same(await _rows(runtime, invoice_sql, s=batch)) == same(await _rows(runtime, invoice_sql, s=one))
    assert await _rows(runtime, line_sql, s=batch) == await _rows(runtime, line_sql, s=one)
    schemes = {r.tax_scheme for r in await _rows(runtime, line_sql, s=batch)}
    assert schemes == {"domestic", "reverse_charge", "oss"}


async def test_repeats_in_a_batch_and_a_repeated_batch_issue_nothing_twice(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await _irish_seller(runtime, tenant, "R")
    buyers = await _buyers(runtime, tenant, 4)
    periods = [period_closed(tenant, b, _lines(i), currency="EUR") for i, b in enumerate(buyers)]

    async with runtime.transaction() as session:
        first = await issue_invoices(runtime, session, [periods[0], periods[1], periods[0]])
    assert first[0] is not None and first[1] is not None and first[2] is None
    async with runtime.transaction() as session:
        second = await issue_invoices(runtime, session, periods)
    assert second[:2] == [None, None] and all(second[2:])
    async with runtime.transaction() as session:
        third = await issue_invoices(runtime, session, periods + periods)
    assert third == [None] * 8

    rows = await _rows(runtime, "SELECT seq FROM invoicing.invoice WHERE seller_id = :s ORDER BY seq", s=tenant)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    outbox = await _rows(runtime, "SELECT count(*) AS n FROM invoicing.outbox WHERE key = ANY(:keys)", keys=[b.encode() for b in buyers])
    assert outbox[0].n == 4


@pytest.mark.parametrize(
    ("spoil", "code"),
    [
        (lambda closed: closed.model_copy(update={"currency": "ZZZ"}), "unknown_currency"),
        (lambda closed: closed.model_copy(update={"buyer_account_id": "never-announced"}), "buyer_country_missing"),
    ],
)
async def test_a_period_that_cannot_be_invoiced_names_itself_and_the_batch_writes_nothing(
    runtime: ServiceRuntime[Settings], tenant: str, spoil: Any, code: str
) -> None:
    await _irish_seller(runtime, tenant, "P")
    buyers = await _buyers(runtime, tenant, 5)
    periods = [period_closed(tenant, b, _lines(i), currency="EUR") for i, b in enumerate(buyers)]
    periods[2] = spoil(periods[2])
    events = [event(closed, tenant) for closed in periods]

    with pytest.raises(PeriodClosedRejected) as raised:
        async with runtime.transaction() as session:
            await on_periods_closed(runtime, session, events)
    assert (raised.value.index, raised.value.event_id, raised.value.code) == (2, events[2].id, code)
    assert list(raised.value.errors) == [events[2].id]
    assert await _rows(runtime, "SELECT 1 FROM invoicing.invoice WHERE seller_id = :s", s=tenant) == []

    # The batch without it issues the others, numbered from 1 with no gap.
    async with runtime.transaction() as session:
        await on_periods_closed(runtime, session, events[:2] + events[3:])
    rows = await _rows(runtime, "SELECT buyer_account_id, seq FROM invoicing.invoice WHERE seller_id = :s ORDER BY seq", s=tenant)
    assert [(r.buyer_account_id, r.seq) for r in rows] == [(b, i) for i, b in enumerate(buyers[:2] + buyers[3:], start=1)]


async def test_concurrent_batches_over_the_same_sellers_stay_gapless(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """Batches naming the same sellers in opposite orders (two replicas, a re-run) neither deadlock
    nor issue twice: the counters are locked in seller order."""
    sellers = [f"{tenant}-{s}" for s in "xyz"]
    buyers = {s: [account_id(s, f"b{i}") for i in range(10)] for s in sellers}
    periods = [period_closed(s, buyers[s][i], [rated("l1", "X", "1", "5.00")]) for i in range(10) for s in sellers]

    async def batch(chunk: list[Any]) -> int:
        async with runtime.transaction() as session:
            return sum(1 for i in await issue_invoices(runtime, session, chunk) if i)

    chunks = [periods[i : i + 7] for i in range(0, 30, 7)]
    issued = await asyncio.gather(*(batch(c) for c in chunks), *(batch(list(reversed(c))) for c in reversed(chunks)), batch(periods))
    assert sum(issued) == 30
    assert gc.isenabled()  # each batch paused the collector; whichever ended last left it running
    for seller in sellers:
        rows = await _rows(runtime, "SELECT seq FROM invoicing.invoice WHERE seller_id = :s ORDER BY seq", s=seller)
        assert [r.seq for r in rows] == list(range(1, 11))


async def test_every_period_of_a_batch_that_cannot_be_invoiced_is_named_at_once(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    await _irish_seller(runtime, tenant, "M")
    buyers = await _buyers(runtime, tenant, 4)
    periods = [period_closed(tenant, b, _lines(i), currency="EUR") for i, b in enumerate(buyers)]
    periods[1] = periods[1].model_copy(update={"buyer_account_id": "never-announced"})
    periods[3] = periods[3].model_copy(update={"currency": "XAU"})
    events = [event(closed, tenant) for closed in periods]

    with pytest.raises(PeriodClosedRejected) as raised:
        async with runtime.transaction() as session:
            await on_periods_closed(runtime, session, events)
    assert raised.value.event_id == events[1].id
    assert {event_id: error.code for event_id, error in raised.value.errors.items()} == {
        events[1].id: "buyer_country_missing",
        events[3].id: "unknown_currency",
    }
    assert await _rows(runtime, "SELECT 1 FROM invoicing.invoice WHERE seller_id = :s", s=tenant) == []


async def test_a_batch_is_issued_with_the_collector_paused_and_resumes_it_also_when_rejected(
    runtime: ServiceRuntime[Settings], tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _irish_seller(runtime, tenant, "G")
    buyers = await _buyers(runtime, tenant, 3)
    periods = [period_closed(tenant, b, _lines(i), currency="EUR") for i, b in enumerate(buyers)]
    collecting: list[bool] = []
    copy = invoice_repo.copy_invoices

    async def recorded(*args: Any) -> Any:
        collecting.append(gc.isenabled())
        return await copy(*args)

    monkeypatch.setattr(invoice_repo, "copy_invoices", recorded)
    spoiled = periods[1].model_copy(update={"currency": "ZZZ"})
    with pytest.raises(PeriodClosedRejected):
        async with runtime.transaction() as session:
            await issue_invoices(runtime, session, [periods[0], spoiled])
    assert gc.isenabled() and collecting == []  # rejected before anything was written, the collector running again

    async with runtime.transaction() as session:
        ids = await issue_invoices(runtime, session, periods)
    assert all(ids) and collecting == [False]  # written with the collector paused
    assert gc.isenabled()
